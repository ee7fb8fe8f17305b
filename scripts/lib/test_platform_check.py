"""Tests of the platform checks (platform_check.py) on the platform as committed, offline:
it passes every check, and each fix of issue #12 reverted on a copy of the rendered objects
makes the check meant for it fail with a message naming the cause.

    scripts/validate-platform --self-test
"""

import copy
import os
import tempfile
import unittest

import yaml

import platform_check as pc

def load(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


FLOWS = load(pc.FLOWS)
_BASE = None


def platform():
    """A fresh copy of the offline platform (rendered once per test run: helm is slow)."""
    global _BASE
    if _BASE is None:
        p = pc.Platform()
        pc.build_own(p)
        stale = pc.load_recorded(p, load(pc.FACTS))
        pc.finish_own(p)
        _BASE = (p, stale)
    return copy.deepcopy(_BASE[0])


def drop_app(p, name):
    p.apps = [a for a in p.apps if a.name != name]
    p.summaries.pop(name, None)


class CommittedPlatform(unittest.TestCase):
    def test_the_recorded_facts_describe_the_pins_and_values_files(self):
        platform()
        self.assertEqual(_BASE[1], [])

    def test_every_check_passes(self):
        p = platform()
        self.assertEqual(pc.check_crd_waves(p), [])
        self.assertEqual(pc.check_application_health(p), [])
        self.assertEqual(pc.check_kind_nodeports(p), [])
        self.assertEqual(pc.check_gateway_listeners(p), [])
        self.assertEqual(pc.check_value_keys(p), [])
        self.assertEqual(pc.check_own_selectors(p), [])
        self.assertEqual(pc.check_alert_routes(p), [])
        fails, lines = pc.check_flows(p, FLOWS)
        self.assertEqual(fails, [])
        self.assertGreaterEqual(len(lines), len(FLOWS["required"]) + len(FLOWS["forbidden"]))


class RevertedFixes(unittest.TestCase):
    """Each fix of issue #12, reverted: the check meant for it must fail."""

    def test_item_1_without_the_gateway_api_crds_application_routes_have_no_crd(self):
        p = platform()
        drop_app(p, "gateway-api-crds")
        fails = "\n".join(pc.check_crd_waves(p))
        self.assertIn("creates gateway.networking.k8s.io/HTTPRoute metrics-app-dev/metrics-app", fails)
        self.assertIn("gateway.networking.k8s.io/GatewayClass", fails)

    def test_item_1_crds_in_a_later_wave_than_their_use_fail_too(self):
        p = platform()
        next(a for a in p.apps if a.name == "gateway-api-crds").wave = 0
        fails = "\n".join(pc.check_crd_waves(p))
        self.assertIn("platform-config (wave -1) creates gateway.networking.k8s.io/Gateway", fails)
        self.assertIn("gateway-api-crds (wave 0)", fails)

    def test_same_wave_is_allowed_only_with_skip_dry_run(self):
        p = platform()
        next(a for a in p.apps if a.name == "gateway-api-crds").wave = -1
        self.assertTrue(any("Gateway" in f for f in pc.check_crd_waves(p)))
        for cr in p.summaries["platform-config"]["custom_resources"]:
            cr["skip_dry_run"] = True
        self.assertFalse(any("platform-config" in f for f in pc.check_crd_waves(p)))

    def test_item_2_a_loadbalancer_traefik_service_fails_the_port_mapping_check(self):
        p = platform()
        svc = next(s for s in p.summaries["traefik"]["services"] if s["name"] == "gateway/traefik")
        svc["type"] = "LoadBalancer"
        fails = "\n".join(pc.check_kind_nodeports(p))
        self.assertIn("Service gateway/traefik (traefik) has nodePort 30080 but type LoadBalancer", fails)

    def test_item_2_a_service_without_the_mapped_node_port_fails(self):
        p = platform()
        svc = next(s for s in p.summaries["traefik"]["services"] if s["name"] == "gateway/traefik")
        for port in svc["ports"]:
            port.pop("nodePort", None)
        self.assertIn("kind maps host 80 -> 30080, but no Service has nodePort 30080", pc.check_kind_nodeports(p))

    def test_item_2_the_old_service_type_key_is_not_a_key_of_the_chart(self):
        # value_key_facts on a chart laid out as traefik 40.x+/41.x is (service.spec.type).
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "templates"))
            with open(os.path.join(d, "values.yaml"), "w") as fh:
                yaml.safe_dump({"service": {"enabled": True, "annotations": {}, "spec": {"type": "LoadBalancer"}},
                                "ports": {"web": {"port": 8000, "nodePort": None}}, "nodeSelector": {}}, fh)
            with open(os.path.join(d, "templates", "service.yaml"), "w") as fh:
                fh.write("type: {{ .Values.service.spec.type }}\n")
            keys = pc.value_key_facts(d, {"service": {"type": "NodePort", "spec": {"type": "NodePort"}},
                                          "ports": {"web": {"nodePort": 30080}},
                                          "nodeSelector": {"ingress-ready": "true"}})
        self.assertEqual(keys, {"service.type": False, "service.spec.type": True, "ports.web.nodePort": True,
                                "nodeSelector.ingress-ready": True})
        p = platform()
        p.values["traefik"] = {"service": {"type": "NodePort"}}
        p.value_keys["traefik"] = {"service.type": False}
        self.assertIn("traefik: service.type is not a key of traefik 41.3.0 (values.yaml, templates): the chart ignores it",
                      pc.check_value_keys(p))

    def test_a_map_a_template_ranges_over_takes_any_key_but_its_siblings_do_not(self):
        # redis-ha renders every entry of redis.config as a redis.conf line; redis.configs
        # (a typo) is not read by anything.
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "templates"))
            with open(os.path.join(d, "values.yaml"), "w") as fh:
                yaml.safe_dump({"redis": {"port": 6379, "config": {"save": "900 1"}}}, fh)
            with open(os.path.join(d, "templates", "_configs.tpl"), "w") as fh:
                fh.write("{{- range $key, $value := .Values.redis.config }}\n{{ $key }} {{ $value }}\n{{- end }}\n")
            keys = pc.value_key_facts(d, {"redis": {"config": {"appendonly": "yes", "save": ""},
                                                    "configs": {"appendonly": "yes"}, "prot": 1}})
        self.assertEqual(keys, {"redis.config.appendonly": True, "redis.config.save": True,
                                "redis.configs.appendonly": False, "redis.prot": False})

    def _revert_item_3(self, p):
        """The chart before the fix: the app's selector without a component label (a subset of
        Valkey's and the helm test pod's labels), and no Valkey NetworkPolicy - in staging, the
        environment that bundles Valkey (prod's counter is the redis-ha release)."""
        s = p.summaries["metrics-app-staging"]
        for w in s["workloads"]:
            if w["name"] == "metrics-app-staging/metrics-app":
                w["selector"]["matchLabels"].pop("app.kubernetes.io/component")
            if w["name"] == "metrics-app-staging/metrics-app-redis":
                w["labels"].update({"app.kubernetes.io/name": "metrics-app", "app.kubernetes.io/component": "redis"})
            if w["name"] == "metrics-app-staging/metrics-app-test-connection":
                w["labels"]["app.kubernetes.io/component"] = "helm-test"
        for svc in s["services"]:
            if svc["name"] == "metrics-app-staging/metrics-app":
                svc["selector"].pop("app.kubernetes.io/component")
            if svc["name"] == "metrics-app-staging/metrics-app-redis":
                svc["selector"].update({"app.kubernetes.io/name": "metrics-app", "app.kubernetes.io/component": "redis"})
        s["network_policies"] = [np for np in s["network_policies"] if np["metadata"]["name"] == "metrics-app"]
        s["network_policies"][0]["spec"]["podSelector"]["matchLabels"].pop("app.kubernetes.io/component")

    def test_item_3_the_overlapping_selector_cuts_the_app_off_from_valkey(self):
        p = platform()
        self._revert_item_3(p)
        fails, _ = pc.check_flows(p, FLOWS)
        text = "\n".join(fails)
        self.assertIn("required flow 'staging app -> Valkey' is denied", text)
        self.assertIn("isolated by metrics-app-staging/metrics-app", text)

    def test_item_3_the_overlapping_selector_puts_valkey_into_the_apps_service_and_pod_set(self):
        p = platform()
        self._revert_item_3(p)
        text = "\n".join(pc.check_own_selectors(p))
        self.assertIn("Service metrics-app-staging/metrics-app selects the pods of 2 workloads", text)
        self.assertIn("Deployment metrics-app-staging/metrics-app's selector also matches the pods of ['metrics-app-staging/metrics-app-redis']",
                      text)

    def test_item_3_without_valkeys_own_policy_another_namespace_reaches_it(self):
        p = platform()
        s = p.summaries["metrics-app-staging"]
        s["network_policies"] = [np for np in s["network_policies"] if np["metadata"]["name"] != "metrics-app-redis"]
        fails, _ = pc.check_flows(p, FLOWS)
        self.assertIn("forbidden flow 'another namespace -> staging Valkey' is allowed", "\n".join(fails))

    def test_item_4_without_the_application_health_check_waves_do_not_gate(self):
        p = platform()
        p.own_objects["bootstrap"] = [o for o in p.own_objects["bootstrap"] if o.get("metadata", {}).get("name") != "argocd-cm"]
        self.assertIn("no argocd-cm with the Application health check", pc.check_application_health(p)[0])

    def test_item_6_alerts_routed_to_the_null_receiver_fail(self):
        p = platform()
        p.values["kube-prometheus-stack"]["alertmanager"]["config"]["route"]["routes"] = []
        fails = pc.check_alert_routes(p)
        self.assertIn("alert MetricsAppTargetDown goes to receiver null", "\n".join(fails))


class Environments(unittest.TestCase):
    """deploy/argocd `environments`: one Application each, its flows checked without an edit of
    platform-flows.yaml."""

    def test_each_environment_is_rendered_in_its_namespace_with_its_profile(self):
        p = platform()
        # Valkey: staging bundles it; prod's counter is the redis-ha release (templates/redis-ha.yaml).
        self.assertEqual(pc.environments(p), [("dev", "metrics-app-dev", False, False),
                                              ("prod", "metrics-app-prod", False, True),
                                              ("staging", "metrics-app-staging", True, False)])
        dev = p.app("metrics-app-dev")
        self.assertEqual(dev.info["value_files"], ["charts/metrics-app/values-dev.yaml"])
        self.assertEqual(dev.info["parameters"]["httpRoute.hostnames[0]"], "dev.metrics-app.localtest.me")
        self.assertEqual(dev.info["parameters"]["secret.externalSecret.remoteKey"], "metrics-app/dev")

    def test_flows_are_repeated_per_environment_and_valkey_flows_only_where_valkey_runs(self):
        envs = [("dev", "ns-dev", False, False), ("prod", "ns-prod", True, True)]
        flows = {"required": [{"name": "{env} app -> Valkey", "each_environment": "valkey",
                               "from": {"workload": "{ns}/metrics-app"}, "to": {"service": "{ns}/metrics-app-redis"},
                               "port": "redis"}],
                 "forbidden": [{"name": "other -> {env}", "each_environment": "all",
                                "from": {"workload": "{other_ns}/metrics-app"}, "to": {"service": "{ns}/metrics-app"},
                                "port": "http"}]}
        out = pc.expand_flows(flows, envs)
        self.assertEqual(out["required"], [{"name": "prod app -> Valkey", "from": {"workload": "ns-prod/metrics-app"},
                                            "to": {"service": "ns-prod/metrics-app-redis"}, "port": "redis"}])
        self.assertEqual([(f["from"]["workload"], f["to"]["service"]) for f in out["forbidden"]],
                         [("ns-prod/metrics-app", "ns-dev/metrics-app"), ("ns-dev/metrics-app", "ns-prod/metrics-app")])
        with self.assertRaises(pc.SetupError):
            pc.expand_flows({"required": [dict(flows["required"][0], each_environment="some")]}, envs)

    def test_an_environment_whose_app_admits_every_namespace_fails_the_isolation_flows(self):
        p = platform()
        for np in p.summaries["metrics-app-staging"]["network_policies"]:
            if np["metadata"]["name"] == "metrics-app":
                for rule in np["spec"]["ingress"]:
                    rule["from"] = [{"namespaceSelector": {}}]
        text = "\n".join(pc.check_flows(p, FLOWS)[0])
        self.assertIn("forbidden flow 'another environment's app -> staging app (environments reach each other "
                      "through the gateway only)' is allowed", text)
        self.assertNotIn("-> dev app", text)

    def test_a_redis_ha_policy_that_admits_every_namespace_fails_the_redis_flows(self):
        p = platform()
        for np in p.summaries["redis-ha-prod"]["network_policies"]:
            for rule in np["spec"]["ingress"]:
                rule["from"] = [{"namespaceSelector": {}}]
        text = "\n".join(pc.check_flows(p, FLOWS)[0])
        self.assertIn("forbidden flow 'another namespace -> prod Redis (redis-ha)' is allowed", text)
        self.assertIn("forbidden flow 'another environment's app -> prod Redis (redis-ha)' is allowed", text)


class PulledCharts(unittest.TestCase):
    def test_a_dependency_shipped_as_an_archive_is_unpacked_and_its_keys_known(self):
        import tarfile
        with tempfile.TemporaryDirectory() as d:
            sub = os.path.join(d, "src", "sub")
            os.makedirs(os.path.join(sub, "templates"))
            with open(os.path.join(sub, "Chart.yaml"), "w") as fh:
                yaml.safe_dump({"apiVersion": "v2", "name": "sub", "version": "1.0.0"}, fh)
            with open(os.path.join(sub, "values.yaml"), "w") as fh:
                yaml.safe_dump({"service": {"type": "ClusterIP"}}, fh)
            with open(os.path.join(sub, "templates", "svc.yaml"), "w") as fh:
                fh.write("nodePort: {{ .Values.service.nodePort }}\n")
            parent = os.path.join(d, "parent")
            os.makedirs(os.path.join(parent, "charts"))
            with open(os.path.join(parent, "Chart.yaml"), "w") as fh:
                yaml.safe_dump({"apiVersion": "v2", "name": "parent", "version": "2.0.0",
                                "dependencies": [{"name": "sub", "version": "1.0.0", "condition": "sub.enabled"}]}, fh)
            with open(os.path.join(parent, "values.yaml"), "w") as fh:
                yaml.safe_dump({"sub": {"enabled": True}}, fh)
            with tarfile.open(os.path.join(parent, "charts", "sub-1.0.0.tgz"), "w:gz") as tar:
                tar.add(sub, arcname="sub")
            prepared = pc.prepare_chart(pc.Sources(), parent, {}, d)
            self.assertTrue(os.path.isfile(os.path.join(prepared, "charts", "sub", "Chart.yaml")))
            keys = pc.value_key_facts(prepared, {"sub": {"service": {"type": "NodePort", "nodePort": 30300, "typo": 1}}})
        self.assertEqual(keys, {"sub.service.type": True, "sub.service.nodePort": True, "sub.service.typo": False})

    def test_a_disabled_dependency_is_dropped_instead_of_looked_up(self):
        with tempfile.TemporaryDirectory() as d:
            parent = os.path.join(d, "parent")
            os.makedirs(parent)
            with open(os.path.join(parent, "Chart.yaml"), "w") as fh:
                yaml.safe_dump({"apiVersion": "v2", "name": "parent", "version": "2.0.0",
                                "dependencies": [{"name": "minio", "version": "5.4.0", "condition": "minio.enabled"}]}, fh)
            with open(os.path.join(parent, "values.yaml"), "w") as fh:
                yaml.safe_dump({"minio": {"enabled": True}}, fh)
            prepared = pc.prepare_chart(pc.Sources(charts_dir=d), parent, {"minio": {"enabled": False}}, d)
            self.assertEqual(pc.read_yaml(os.path.join(prepared, "Chart.yaml"))["dependencies"], [])
            with self.assertRaises(pc.SetupError) as e:
                pc.prepare_chart(pc.Sources(charts_dir=d), parent, {}, d)
            self.assertIn("chart minio 5.4.0 not found under", str(e.exception))


class Staleness(unittest.TestCase):
    def test_a_version_bump_without_re_recording_is_reported(self):
        p = pc.Platform()
        pc.build_own(p)
        next(a for a in p.apps if a.name == "traefik").info["version"] = "99.0.0"
        stale = pc.load_recorded(p, load(pc.FACTS))
        self.assertIn("traefik: recorded for version 41.3.0, deploy/argocd/values.yaml pins 99.0.0; re-record with sources",
                      stale)

    def test_compare_facts_names_what_differs(self):
        rec = {"components": {"traefik": {"source": {"version": "1"}, "summary": {"services": [1]}}}}
        der = {"components": {"traefik": {"source": {"version": "1"}, "summary": {"services": [2]}}}}
        self.assertEqual(pc.compare_facts(rec, der), ["traefik: recorded summary differs from the sources (services)"])


if __name__ == "__main__":
    unittest.main()
