"""kubeha.security through a real Salt master and minions: with teams in pillar the init
node renders one kube_objects.applied step holding the teams' RBAC and the prune of
kubeha's RBAC kinds; without teams the same step is a prune only; a team asking for
cluster-admin without saying so stops the run before anything renders."""

from __future__ import annotations

TEAMS = {
    "platform": {"groups": ["oidc:platform"], "cluster_roles": ["view"]},
    "app-a": {"groups": ["oidc:app-a"], "namespaces": {"app-a": ["edit"]}},
}
STEP = "kubeha-security-rbac-applied"


def _step(ret: dict) -> dict:
    args = {}
    for arg in ret[STEP]["kube_objects"]:
        if isinstance(arg, dict):
            args.update(arg)
    return args


def test_teams_render_as_one_applied_step_with_prune(example_minions):
    pillar = {"kubeha": {"security": {"teams": TEAMS}}}
    ret = (
        example_minions["cp-1"]
        .salt_call_cli(timeout=120)
        .run("state.show_sls", "kubeha.security", pillar=pillar)
    )
    assert ret.returncode == 0, ret.stdout
    args = _step(ret.data)
    names = [(o["kind"], o["metadata"]["name"]) for o in args["objects"]]
    assert names == [
        ("ClusterRoleBinding", "kubeha:team:platform:view"),
        ("RoleBinding", "kubeha:team:app-a:edit"),
    ]
    assert args["prune"] == {
        "selector": "app.kubernetes.io/managed-by=kubeha,kubeha.io/part=rbac",
        "resources": ["clusterroles", "clusterrolebindings", "roles", "rolebindings"],
    }
    assert args["onlyif"] == "test -e /etc/kubernetes/admin.conf"


def test_no_teams_render_a_prune_only_step_on_the_init_node_only(example_minions):
    ret = (
        example_minions["cp-1"].salt_call_cli(timeout=120).run("state.show_sls", "kubeha.security")
    )
    assert ret.returncode == 0, ret.stdout
    assert _step(ret.data)["objects"] == []
    other = (
        example_minions["cp-2"].salt_call_cli(timeout=120).run("state.show_sls", "kubeha.security")
    )
    assert STEP not in other.data and "kubeha-security-from-init-node" in other.data


def test_cluster_admin_team_stops_before_any_state_renders(example_minions):
    teams = {"sre": {"groups": ["oidc:sre"], "cluster_roles": ["cluster-admin"]}}
    ret = (
        example_minions["cp-1"]
        .salt_call_cli(timeout=120)
        .run(
            "state.apply", "kubeha", "test=True", pillar={"kubeha": {"security": {"teams": teams}}}
        )
    )
    assert ret.returncode != 0
    output = ret.stdout + ret.stderr
    assert "kubeha:security:teams:sre:cluster_roles: cluster-admin refused" in output, output
    assert "Succeeded:" not in output
