from django.urls import path, re_path

from . import (
    schema,
    views,
    views_apply,
    views_audit,
    views_backups,
    views_desired,
    views_fleet,
    views_health,
    views_ipvsadm,
    views_tokens,
)

app_name = "api"

urlpatterns = [
    path("v1/clusters/", views_fleet.ClusterList.as_view(), name="clusters"),
    path("v1/clusters/<slug:name>/", views_fleet.ClusterDetail.as_view(), name="cluster"),
    path("v1/clusters/<slug:name>/ipvsadm/", views_ipvsadm.Commands.as_view(), name="ipvsadm"),
    path("v1/clusters/<slug:name>/ipvsadm/save/", views_ipvsadm.Save.as_view(), name="ipvsadm_save"),
    path("v1/clusters/<slug:name>/ipvsadm/list/", views_ipvsadm.List.as_view(), name="ipvsadm_list"),
    path("v1/clusters/<slug:name>/plan/", views_apply.Plan.as_view(), name="plan"),
    path("v1/clusters/<slug:name>/apply/", views_apply.Apply.as_view(), name="apply"),
    path("v1/balancers/", views_fleet.BalancerList.as_view(), name="balancers"),
    path("v1/balancers/<slug:name>/", views_fleet.BalancerDetail.as_view(), name="balancer"),
    path("v1/balancers/<slug:name>/enrolment-token/", views_fleet.EnrolmentToken.as_view(), name="enrolment_token"),
    path("v1/balancers/<slug:name>/key/", views_fleet.BalancerKey.as_view(), name="balancer_key"),
    path("v1/services/", views_desired.ServiceList.as_view(), name="services"),
    path("v1/services/<int:pk>/", views_desired.ServiceDetail.as_view(), name="service"),
    path("v1/services/<int:pk>/check/", views_health.ServiceCheck.as_view(), name="service_check"),
    path("v1/services/<int:pk>/health-policy/", views_health.ServiceHealthPolicy.as_view(), name="health_policy"),
    path("v1/real-servers/", views_desired.RealServerList.as_view(), name="real_servers"),
    path("v1/real-servers/<int:pk>/", views_desired.RealServerDetail.as_view(), name="real_server"),
    path("v1/real-servers/<int:pk>/check/", views_health.ServerCheck.as_view(), name="server_check"),
    path("v1/audit/", views_audit.AuditList.as_view(), name="audit"),
    path("v1/audit/<int:pk>/", views_audit.AuditDetail.as_view(), name="audit_record"),
    path("v1/backups/", views_backups.BackupList.as_view(), name="backups"),
    path("v1/backups/<int:pk>/", views_backups.BackupDetail.as_view(), name="backup"),
    path("v1/backups/<int:pk>/restore/", views_backups.Restore.as_view(), name="backup_restore"),
    path("v1/balancers/<slug:name>/backups/", views_backups.TakeBackup.as_view(), name="take_backup"),
    path("v1/tokens/", views_tokens.TokenList.as_view(), name="tokens"),
    path("v1/tokens/<int:pk>/", views_tokens.TokenDetail.as_view(), name="token"),
    path("v1/schema/", schema.Schema.as_view(), name="schema"),
    path("v1/docs/", schema.Docs.as_view(), name="docs"),
    # [\s\S], not `.`: a path with an (escaped) newline in it is an unknown URL under /api/ too.
    re_path(r"^[\s\S]*$", views.NotFound.as_view(), name="not_found"),
]
