"""The `lvsadmin` command: ipvsadm against a panel over its REST API (a client: no Django)."""
