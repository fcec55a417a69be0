"""lvsadmin.broker: the TLS options the panel and the agent give Celery for their broker URL."""

from __future__ import annotations

import ssl

import pytest

from lvsadmin.broker import use_ssl


def test_a_plain_redis_url_gets_no_tls():
    assert use_ssl("redis://agent:pw@broker:6379/0") is None


def test_a_rediss_url_without_options_verifies_the_server():
    assert use_ssl("rediss://agent:pw@broker:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def test_a_rediss_url_with_known_options_is_accepted_as_it_is():
    # kombu gives the URL's ssl_* options precedence over broker_use_ssl: ours is only the default.
    assert use_ssl("rediss://broker:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/lvsadmin/ca.pem") is not None
    assert use_ssl("rediss://broker:6380/0?ssl_cert_reqs=CERT_NONE") is not None


def test_a_misspelt_ssl_cert_reqs_is_refused_naming_it():
    # kombu would take it as "no verification" with only a warning in the log.
    with pytest.raises(ValueError, match="ssl_cert_reqs='require'"):
        use_ssl("rediss://broker:6380/0?ssl_cert_reqs=require&ssl_ca_certs=/etc/lvsadmin/ca.pem")
