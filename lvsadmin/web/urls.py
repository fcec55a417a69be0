from django.urls import path

from .views import alerts, audit, auth, backups, clusters, enrol, health, health_io, monitoring, services, tables, users
from .views.metrics import metrics as prometheus_metrics

urlpatterns = [
    path("login/", auth.login, name="login"),
    path("logout/", auth.logout, name="logout"),
    path("password/", auth.password_change, name="password_change"),
    path("", clusters.dashboard, name="dashboard"),
    # clusters
    path("clusters/new/", clusters.cluster_create, name="cluster_create"),
    path("clusters/<slug:name>/", clusters.cluster_detail, name="cluster"),
    path("clusters/<slug:name>/settings/", clusters.cluster_edit, name="cluster_edit"),
    path("clusters/<slug:name>/delete/", clusters.cluster_delete, name="cluster_delete"),
    path("clusters/<slug:name>/balancers/new/", clusters.balancer_create, name="balancer_create"),
    path("clusters/<slug:name>/services/new/", services.service_create, name="service_create"),
    path("clusters/<slug:name>/ipvsadm/", tables.cluster_list, name="cluster_list"),
    path("clusters/<slug:name>/plan/", tables.plan, name="plan"),
    path("clusters/<slug:name>/take-back/", tables.take_back, name="take_back"),
    path("clusters/<slug:name>/import/", tables.import_table, name="import"),
    path("clusters/<slug:name>/export/", tables.export_table, name="export"),
    path("clusters/<slug:name>/console/", tables.console, name="console"),
    path("clusters/<slug:name>/health/export/", health_io.export_health, name="health_export"),
    path("clusters/<slug:name>/health/import/", health_io.import_health, name="health_import"),
    path("clusters/<slug:name>/keepalived/import/", health_io.import_keepalived, name="keepalived_import"),
    # balancers
    path("balancers/<slug:name>/", clusters.balancer_detail, name="balancer"),
    path("balancers/<slug:name>/edit/", clusters.balancer_edit, name="balancer_edit"),
    path("balancers/<slug:name>/delete/", clusters.balancer_delete, name="balancer_delete"),
    path("balancers/<slug:name>/ipvsadm/", tables.balancer_list, name="balancer_list"),
    path("balancers/<slug:name>/backup/", clusters.balancer_backup, name="balancer_backup"),
    path("balancers/<slug:name>/key/", clusters.balancer_key, name="balancer_key"),
    path("balancers/<slug:name>/key/revoke/", clusters.balancer_key_revoke, name="balancer_key_revoke"),
    path("balancers/<slug:name>/enrolment-token/", enrol.enrolment_token, name="enrolment_token"),
    path("enrol/", enrol.enrol, name="enrol"),
    # Prometheus's scrape (a bearer token and/or an allowed network; no sign-in): lvsadmin/web/views/metrics.py
    path("metrics", prometheus_metrics, name="metrics"),
    # backups (lvsadmin/web/views/backups.py)
    path("balancers/<slug:name>/backups/", backups.balancer_backups, name="balancer_backups"),
    path("balancers/<slug:name>/backups/upload/", backups.backup_upload, name="backup_upload"),
    path("balancers/<slug:name>/backups/schedule/", backups.balancer_schedule, name="balancer_schedule"),
    path("balancers/<slug:name>/backups/schedule/delete/", backups.balancer_schedule_delete,
         name="balancer_schedule_delete"),
    path("clusters/<slug:name>/backups/", backups.cluster_backups, name="cluster_backups"),
    path("clusters/<slug:name>/backups/schedule/", backups.cluster_schedule, name="cluster_schedule"),
    path("clusters/<slug:name>/backups/schedule/delete/", backups.cluster_schedule_delete,
         name="cluster_schedule_delete"),
    path("backups/diff/", backups.backup_diff, name="backup_diff"),
    path("backups/<int:pk>/", backups.backup_detail, name="backup"),
    path("backups/<int:pk>/ipvsadm.txt", backups.backup_download, {"fmt": "text"}, name="backup_download_text"),
    path("backups/<int:pk>/backup.json", backups.backup_download, {"fmt": "json"}, name="backup_download_json"),
    path("backups/<int:pk>/restore/", backups.backup_restore, name="backup_restore"),
    # virtual services and real servers
    path("services/<int:pk>/", services.service_detail, name="service"),
    path("services/<int:pk>/edit/", services.service_edit, name="service_edit"),
    path("services/<int:pk>/delete/", services.service_delete, name="service_delete"),
    path("services/<int:pk>/servers/new/", services.real_server_create, name="real_server_create"),
    path("servers/<int:pk>/edit/", services.real_server_edit, name="real_server_edit"),
    path("servers/<int:pk>/delete/", services.real_server_delete, name="real_server_delete"),
    path("servers/<int:pk>/weight/", services.real_server_weight, name="real_server_weight"),
    path("servers/<int:pk>/state/", services.real_server_state, name="real_server_state"),
    # health definitions (lvsadmin/web/views/health.py)
    path("services/<int:pk>/health/check/", health.service_check_edit, name="service_check_edit"),
    path("services/<int:pk>/health/policy/", health.service_policy_edit, name="service_policy_edit"),
    path("servers/<int:pk>/health/", health.server_check_edit, name="server_check_edit"),
    # health events (lvsadmin/web/views/monitoring.py)
    path("health/events/", monitoring.health_events, name="health_events"),
    path("clusters/<slug:name>/health/events/", monitoring.health_events, name="cluster_health_events"),
    # alerts (lvsadmin/web/views/alerts.py): incidents for every reader, channels for admins
    path("alerts/", alerts.incidents, name="alerts"),
    path("alerts/channels/", alerts.channel_list, name="alert_channels"),
    path("alerts/channels/new/", alerts.channel_create, name="alert_channel_create"),
    path("alerts/channels/<slug:name>/", alerts.channel_detail, name="alert_channel"),
    path("alerts/channels/<slug:name>/edit/", alerts.channel_edit, name="alert_channel_edit"),
    path("alerts/channels/<slug:name>/test/", alerts.channel_test, name="alert_channel_test"),
    path("alerts/channels/<slug:name>/delete/", alerts.channel_delete, name="alert_channel_delete"),
    # audit
    path("audit/", audit.audit_log, name="audit"),
    path("audit/export.csv", audit.audit_csv, name="audit_csv"),
    path("audit/verify/", audit.audit_verify, name="audit_verify"),
    # users
    path("users/", users.user_list, name="users"),
    path("users/new/", users.user_create, name="user_create"),
    path("users/<int:pk>/", users.user_edit, name="user_edit"),
]
