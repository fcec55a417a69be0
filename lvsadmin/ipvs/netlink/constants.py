"""IPVS over generic netlink: the numbers (include/uapi/linux/ip_vs.h, linux/netlink.h, linux/genetlink.h).

Netlink and generic netlink constants, the IPVS family's commands and attributes, service flags, and the
kernel's numbers for protocols, forwarding methods and tunnel options with their names.
"""

from __future__ import annotations

import socket

SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

IPVS_GENL_VERSION = 1

# IPVS commands (include/uapi/linux/ip_vs.h)
CMD_NEW_SERVICE = 1
CMD_SET_SERVICE = 2
CMD_DEL_SERVICE = 3
CMD_GET_SERVICE = 4
CMD_NEW_DEST = 5
CMD_SET_DEST = 6
CMD_DEL_DEST = 7
CMD_GET_DEST = 8
CMD_NEW_DAEMON = 9
CMD_DEL_DAEMON = 10
CMD_GET_DAEMON = 11
CMD_SET_CONFIG = 12
CMD_GET_CONFIG = 13
CMD_SET_INFO = 14
CMD_GET_INFO = 15
CMD_ZERO = 16
CMD_FLUSH = 17

# top-level attributes
CMD_ATTR_SERVICE = 1
CMD_ATTR_DEST = 2
CMD_ATTR_DAEMON = 3
CMD_ATTR_TIMEOUT_TCP = 4
CMD_ATTR_TIMEOUT_TCP_FIN = 5
CMD_ATTR_TIMEOUT_UDP = 6
INFO_ATTR_VERSION = 1
INFO_ATTR_CONN_TAB_SIZE = 2

# service attributes
SVC_AF = 1
SVC_PROTOCOL = 2
SVC_ADDR = 3
SVC_PORT = 4
SVC_FWMARK = 5
SVC_SCHED_NAME = 6
SVC_FLAGS = 7
SVC_TIMEOUT = 8
SVC_NETMASK = 9
SVC_STATS = 10
SVC_PE_NAME = 11
SVC_STATS64 = 12

# destination attributes
DEST_ADDR = 1
DEST_PORT = 2
DEST_FWD_METHOD = 3
DEST_WEIGHT = 4
DEST_U_THRESH = 5
DEST_L_THRESH = 6
DEST_ACTIVE_CONNS = 7
DEST_INACT_CONNS = 8
DEST_PERSIST_CONNS = 9
DEST_STATS = 10
DEST_ADDR_FAMILY = 11
DEST_STATS64 = 12
DEST_TUN_TYPE = 13
DEST_TUN_PORT = 14
DEST_TUN_FLAGS = 15

# sync daemon attributes
DAEMON_STATE = 1
DAEMON_MCAST_IFN = 2
DAEMON_SYNC_ID = 3
DAEMON_SYNC_MAXLEN = 4
DAEMON_MCAST_GROUP = 5
DAEMON_MCAST_GROUP6 = 6
DAEMON_MCAST_PORT = 7
DAEMON_MCAST_TTL = 8
DAEMON_STATES = {"master": 1, "backup": 2}
DAEMON_STATE_NAMES = {1: "master", 2: "backup"}

# service flags (IP_VS_SVC_F_*)
F_PERSISTENT = 0x1
F_HASHED = 0x2  # set by the kernel on every hashed service: not configuration
F_ONEPACKET = 0x4
F_SCHED_SHIFT = 3  # IP_VS_SVC_F_SCHED1..3 are 0x8, 0x10, 0x20; the model keeps them as 1, 2, 4

PROTO_NUM = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}
PROTO_NAME = {v: k for k, v in PROTO_NUM.items()}
FAMILY_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
AF_FAMILY = {socket.AF_INET: 4, socket.AF_INET6: 6}

# forwarding methods (IP_VS_CONN_F_FWD_MASK values)
FWD_NUM = {"masq": 0, "local": 1, "tunnel": 2, "route": 3, "bypass": 4}
FWD_NAME = {v: k for k, v in FWD_NUM.items()}
TUN_TYPE_NUM = {"ipip": 0, "gue": 1, "gre": 2}
TUN_TYPE_NAME = {v: k for k, v in TUN_TYPE_NUM.items()}
TUN_CSUM_NUM = {"nocsum": 0, "csum": 1, "remcsum": 2}
TUN_CSUM_NAME = {v: k for k, v in TUN_CSUM_NUM.items()}
