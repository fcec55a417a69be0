"""Migration from keepalived (lvsadmin.health.keepalived): a realistic keepalived.conf becomes the table and the
checks it describes; what lvsadmin cannot do the same way is refused with its line, or changed with a warning."""

from __future__ import annotations

import socket
import textwrap

import pytest

from lvsadmin.health.keepalived import parse_keepalived
from lvsadmin.health.spec import Check, Policy, ServiceHealth, server_text
from lvsadmin.health.text import LineError
from lvsadmin.ipvs.rules import format_save, parse_save

CONF = """\
! Configuration File for keepalived
global_defs {
   router_id LVS_DEVEL
}
vrrp_instance VI_1 {
    state MASTER
    virtual_ipaddress {
        10.0.0.1
    }
}

virtual_server 10.0.0.1 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind DR
    persistence_timeout 50
    protocol TCP
    quorum 2
    hysteresis 1
    sorry_server 10.0.0.9 80

    real_server 192.0.2.7 80 {
        weight 3
        inhibit_on_failure
        HTTP_GET {
            url {
              path /health
              status_code 200-299 301
            }
            connect_timeout 3
            nb_get_retry 3
            delay_before_retry 3
        }
    }
    real_server 192.0.2.8 80 {
        inhibit_on_failure
        HTTP_GET {
            url {
              path /health
              status_code 200-299 301
            }
            connect_timeout 3
            retry 3
        }
    }
    real_server 192.0.2.9 80 {
        inhibit_on_failure
        TCP_CHECK {
            connect_port 8080
            connect_timeout 2
        }
    }
}

virtual_server 10.0.0.1 25 {
    delay_loop 10
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 192.0.2.20 2525 {
        MISC_CHECK {
            misc_path "/usr/local/bin/check_smtp 192.0.2.20"
            misc_timeout 5
            misc_dynamic
        }
    }
    real_server 192.0.2.21 2525 {
    }
}

virtual_server 10.0.0.53 53 {
    protocol UDP
    lb_kind NAT
    real_server 192.0.2.53 53 {
        DNS_CHECK {
            name example.org
            type A
        }
    }
}

virtual_server fwmark 7 {
    lb_algo sh
    lb_kind DR
    real_server 192.0.2.30 {
        weight 2
    }
}
"""


def no_dns(name, port, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def imported(text: str):
    return parse_keepalived(textwrap.dedent(text), resolver=no_dns)


def refused(text: str) -> LineError:
    with pytest.raises(LineError) as info:
        imported(text)
    return info.value


def test_a_keepalived_conf_becomes_the_table_keepalived_would_build():
    result = parse_keepalived(CONF, resolver=no_dns)
    assert result.table == parse_save("""\
-A -t 10.0.0.1:80 -s wrr -p 50
-a -t 10.0.0.1:80 -r 192.0.2.7:80 -g -w 3
-a -t 10.0.0.1:80 -r 192.0.2.8:80 -g -w 1
-a -t 10.0.0.1:80 -r 192.0.2.9:80 -g -w 1
-A -t 10.0.0.1:25 -s rr
-a -t 10.0.0.1:25 -r 192.0.2.20:2525 -m -w 1
-a -t 10.0.0.1:25 -r 192.0.2.21:2525 -m -w 1
-A -u 10.0.0.53:53 -s wlc
-a -u 10.0.0.53:53 -r 192.0.2.53:53 -m -w 1
-A -f 7 -s sh
-a -f 7 -r 192.0.2.30:0 -g -w 2
""")
    assert result.warnings == ["line 2: global_defs skipped (not part of the IPVS table)",
                               "line 5: vrrp_instance skipped (not part of the IPVS table)"]


def test_the_checkers_become_checks_with_keepalived_timings_and_the_odd_server_an_override():
    health = parse_keepalived(CONF, resolver=no_dns).health
    # retry 3 is three more probes after the first failure: down after 4; back after one success, as keepalived
    http = Check(kind="http", path="/health", expect="200-299,301", interval=6, timeout=3, fall=4, rise=1)
    assert health["tcp|10.0.0.1|80"] == ServiceHealth(
        check=http,
        policy=Policy(on_failure="inhibit", quorum=2, hysteresis=1, sorry_server="10.0.0.9:80", sorry_forward="route"),
        overrides={server_text("192.0.2.9", 80): Check(kind="tcp", port=8080, interval=6, timeout=2, fall=2, rise=1)},
    )
    # no inhibit_on_failure: keepalived removes a failed server; a server with no checker is never checked
    assert health["tcp|10.0.0.1|25"] == ServiceHealth(
        check=Check(kind="misc", command="/usr/local/bin/check_smtp 192.0.2.20", dynamic=True, interval=10,
                    timeout=5, fall=1, rise=1),
        policy=Policy(on_failure="remove"),
        overrides={server_text("192.0.2.21", 2525): None},
    )
    # keepalived's defaults: delay_loop 60, connect_timeout 5, DNS retry 3
    assert health["udp|10.0.0.53|53"].check == Check(kind="dns", query="example.org", qtype="A", interval=60,
                                                     timeout=5, fall=4, rise=1)
    assert "fwmark|4|7" not in health  # nothing checked, default policy: nothing to say


def test_the_import_exports_as_ipvsadm_rules():
    assert format_save(parse_keepalived(CONF, resolver=no_dns).table).startswith("-A -t 10.0.0.1:25 -s rr\n")


def test_ssl_get_does_not_verify_the_certificate_like_keepalived_and_alpha_starts_servers_down():
    result = imported("""
        virtual_server 2001:db8::1 443 {
            protocol TCP
            lb_kind NAT
            alpha
            virtualhost www.example.org
            real_server 2001:db8::10 443 {
                SSL_GET {
                    url { path / }   # on one line, as some write it
                }
            }
        }
        """)
    health = result.health["tcp|2001:db8::1|443"]
    assert health.check.kind == "https" and not health.check.verify_tls and health.check.host == "www.example.org"
    assert health.policy.start_down and health.policy.on_failure == "remove"


def test_mixed_inhibit_on_failure_removes_and_says_so():
    result = imported("""
        virtual_server 10.0.0.1 80 {
            protocol TCP
            lb_kind NAT
            real_server 192.0.2.1 80 {
                inhibit_on_failure
                TCP_CHECK {
                }
            }
            real_server 192.0.2.2 80 {
                TCP_CHECK {
                }
            }
        }
        """)
    assert result.health["tcp|10.0.0.1|80"].policy.on_failure == "remove"
    assert "line 2: inhibit_on_failure is set on some real servers only (192.0.2.1:80)" in result.warnings[0]


def test_a_dr_server_on_another_port_takes_the_services_port_with_a_warning_as_keepalived_does():
    result = imported("""
        virtual_server 10.0.0.1 80 {
            protocol TCP
            lb_kind DR
            real_server 192.0.2.1 8080 {
            }
        }
        """)
    assert result.table.services[0].destinations[0].port == 80
    assert result.warnings == ["line 5: the real server's port 8080 becomes the service's port 80 (DR and TUN "
                               "forward to the same port; keepalived resets it too)"]


def test_a_virtual_server_without_a_protocol_is_udp_as_keepalived_makes_it_and_the_import_says_so():
    # keepalived 2.2.7 logs "no protocol set - defaulting to UDP" (seen in the IPVS VM, tests/kernel)
    result = imported("""
        virtual_server 10.0.0.1 80 {
            lb_kind NAT
            real_server 192.0.2.1 80 {
                TCP_CHECK {
                }
            }
        }
        """)
    assert format_save(result.table) == "-A -u 10.0.0.1:80 -s wlc\n-a -u 10.0.0.1:80 -r 192.0.2.1:80 -m -w 1\n"
    assert result.warnings == ["line 2: no protocol: UDP, keepalived's default (it says so in its log too)"]
    # keepalived's TCP_CHECK still connects over TCP, to the real server's port
    assert result.health["udp|10.0.0.1|80"].check.port == 80


def test_scheduler_flags_are_keywords_of_their_own_as_in_keepalived():
    result = imported("""
        virtual_server 10.0.0.1 443 {
            lb_algo sh
            sh-port
            sh-fallback
            lb_kind NAT
            protocol TCP
        }
        """)
    assert format_save(result.table) == "-A -t 10.0.0.1:443 -s sh -b sh-fallback,sh-port\n"


def test_persistence_timeout_without_a_value_is_six_minutes_as_in_keepalived():
    result = imported("""
        virtual_server fwmark 12 {
            lb_kind DR
            persistence_timeout
        }
        """)
    assert format_save(result.table) == "-A -f 12 -s wlc -p 360\n"


@pytest.mark.parametrize(("text", "message"), [
    ("virtual_server_group web {\n 10.0.0.1 80\n}", "line 1: virtual_server_group is not supported"),
    ("virtual_server group web {\n}", "line 1: virtual_server_group is not supported"),
    ("include /etc/keepalived/conf.d/*.conf", "line 1: include is not supported"),
    ("virtual_server 10.0.0.1 80 {\n lb_kind NAT\n real_server 192.0.2.1 80 {\n  HTTP_GET {\n   url {\n"
     "    digest 9b3a0c85a887a256d6939da88aabd8cd\n   }\n  }\n }\n}", "line 6: digest is not supported"),
    ("virtual_server 10.0.0.1 80 {\n real_server 192.0.2.1 80 {\n  SMTP_CHECK {\n  }\n }\n}",
     "line 3: SMTP_CHECK is not supported"),
    ("virtual_server 10.0.0.1 80 {\n real_server 192.0.2.1 80 {\n  TCP_CHECK {\n  }\n  HTTP_GET {\n  }\n }\n}",
     "line 5: a second checker for real server 192.0.2.1"),
    ("virtual_server 10.0.0.1 80 {\n lb_algo bogus\n}", "line 1: "),
    ("virtual_server 10.0.0.1 80 {\n lb_kind NAT\n real_server 192.0.2.1 80 {\n  weight 70000\n }\n}",
     "line 3: weight: weight must be 0..65535"),
    ("virtual_server 10.0.0.1 80 {\n real_server 192.0.2.1 80 {\n  TCP_CHECK {\n   connect_ip 192.0.2.2\n  }\n }\n}",
     "line 4: connect_ip is not supported in TCP_CHECK"),
    ("virtual_server 10.0.0.1 80 {\n delay_loop 0\n real_server 192.0.2.1 80 {\n  TCP_CHECK {\n  }\n }\n}",
     "line 4: interval must be 1..3600 seconds"),
    ("virtual_server 10.0.0.1 80 {\n frobnicate yes\n}", "line 2: frobnicate is not supported in a virtual_server"),
    ("virtual_server 10.0.0.300 80 {\n}", "line 1: '10.0.0.300' is not an IP address"),
    ("virtual_server 10.0.0.1 80 {\n lb_kind NAT\n", "line 1: this block is never closed"),
    ("}", "line 1: a } that closes no block"),
    ("virtual_server 10.0.0.1 80 {\n}\nvirtual_server 10.0.0.1 80 {\n}", "line 3: "),
    ("virtual_server 10.0.0.1 80 {\n real_server 192.0.2.1 80 {\n  DNS_CHECK {\n  }\n }\n}",
     "line 3: DNS_CHECK needs a name to ask"),
    ("bogus_block {\n}", "line 1: bogus_block is not supported (only virtual_server blocks are imported)"),
    ("virtual_server 10.0.0.1 80 {\n real_server 192.0.2.1 80 {\n  MISC_CHECK {\n   misc_path \"/bin/x\n  }\n }\n}",
     "line 4: a quoted string is not closed"),
])
def test_what_lvsadmin_cannot_take_is_refused_with_its_line(text, message):
    assert str(refused(text)).startswith(message)
