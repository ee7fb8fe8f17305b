"""Unit tests of flux_pins.py: the Flux objects agree with deploy/argocd, and each kind of
drift between the two engines is reported.

    .tools/venv/bin/python -m unittest discover -s scripts/lib -p 'test_flux_pins.py'
"""

import copy
import unittest

from flux_pins import check

REPO = "http://git-server.gitops.svc.cluster.local/appctl/metrics-app.git"
GW = "https://github.com/kubernetes-sigs/gateway-api.git"

ARGOCD = {
    "repoURL": REPO,
    "targetRevision": "main",
    "gatewayAPI": {"repoURL": GW, "version": "v1.5.1", "path": "config/crd/standard", "wave": -3},
    "components": {
        "traefik": {"repoURL": "https://traefik.github.io/charts", "chart": "traefik", "version": "41.3.0",
                    "namespace": "gateway", "wave": -2},
    },
    "environments": {
        "dev": {"enabled": True, "namespace": "metrics-app-dev", "host": "dev.metrics-app.localtest.me",
                "valueFiles": ["values-dev.yaml"], "image": {"repository": "metrics-app", "tag": "abc"},
                "secretPath": "metrics-app/dev"},
    },
}
VALUES = {"traefik": "ports:\n  web: {}\n"}


def obj(kind, name, spec, **extra):
    return {"kind": kind, "metadata": {"name": name, "namespace": "flux-system"}, "spec": spec, **extra}


def flux():
    return [
        obj("GitRepository", "metrics-app", {"url": REPO, "ref": {"branch": "main"}}),
        obj("GitRepository", "gateway-api", {"url": GW, "ref": {"tag": "v1.5.1"}}),
        obj("Kustomization", "gateway-api-crds", {"sourceRef": {"kind": "GitRepository", "name": "gateway-api"},
                                                  "path": "./config/crd/standard"}),
        obj("HelmRepository", "traefik", {"url": "https://traefik.github.io/charts"}),
        obj("HelmRelease", "traefik", {
            "targetNamespace": "gateway",
            "chart": {"spec": {"chart": "traefik", "version": "41.3.0",
                               "sourceRef": {"kind": "HelmRepository", "name": "traefik"}}},
            "valuesFrom": [{"kind": "ConfigMap", "name": "traefik-values", "valuesKey": "values.yaml"}]}),
        {"kind": "ConfigMap", "metadata": {"name": "traefik-values"}, "data": {"values.yaml": VALUES["traefik"]}},
        obj("HelmRelease", "metrics-app-dev", {
            "targetNamespace": "metrics-app-dev",
            "chart": {"spec": {"chart": "./charts/metrics-app",
                               "sourceRef": {"kind": "GitRepository", "name": "metrics-app"},
                               "valuesFiles": ["./charts/metrics-app/values.yaml", "./charts/metrics-app/values-dev.yaml"]}},
            "values": {"image": {"repository": "metrics-app", "tag": "other-tag"},
                       "httpRoute": {"hostnames": ["dev.metrics-app.localtest.me"]},
                       "ingress": {"host": "dev.metrics-app.localtest.me"},
                       "secret": {"externalSecret": {"remoteKey": "metrics-app/dev"}}}}),
        obj("Kustomization", "metrics-app-dev", {"sourceRef": {"kind": "GitRepository", "name": "metrics-app"},
                                                 "path": "./deploy/flux/apps/dev"}),
    ]


def find(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


class FluxPins(unittest.TestCase):
    def assert_reports(self, objects, fragment, argocd=ARGOCD, values=VALUES):
        errors = check(argocd, objects, values)
        self.assertTrue(any(fragment in e for e in errors), f"no error with {fragment!r} in {errors}")

    def test_agreeing_objects_pass_and_image_tags_may_differ(self):
        self.assertEqual(check(ARGOCD, flux(), VALUES), [])

    def test_a_chart_version_that_drifted_is_reported_with_both_versions(self):
        objects = flux()
        find(objects, "HelmRelease", "traefik")["spec"]["chart"]["spec"]["version"] = "41.4.0"
        self.assert_reports(objects, "chart version '41.4.0', deploy/argocd pins '41.3.0'")

    def test_a_version_bumped_only_in_argocd_is_reported(self):
        argocd = copy.deepcopy(ARGOCD)
        argocd["components"]["traefik"]["version"] = "42.0.0"
        self.assert_reports(flux(), "deploy/argocd pins '42.0.0'", argocd=argocd)

    def test_a_component_without_a_helmrelease_is_reported(self):
        argocd = copy.deepcopy(ARGOCD)
        argocd["components"]["loki"] = {"repoURL": "https://x", "chart": "loki", "version": "1.0.0",
                                        "namespace": "logging"}
        self.assert_reports(flux(), "component loki: no HelmRelease loki", argocd=argocd)

    def test_an_extra_helmrelease_is_reported(self):
        objects = flux()
        extra = copy.deepcopy(find(objects, "HelmRelease", "traefik"))
        extra["metadata"]["name"] = "nginx"
        objects.append(extra)
        self.assert_reports(objects, "HelmRelease nginx: not a component")

    def test_another_chart_repository_is_reported(self):
        objects = flux()
        find(objects, "HelmRepository", "traefik")["spec"]["url"] = "https://helm.traefik.io/traefik"
        self.assert_reports(objects, "chart repository 'https://helm.traefik.io/traefik'")

    def test_values_that_are_not_the_platform_values_file_are_reported(self):
        objects = flux()
        find(objects, "ConfigMap", "traefik-values")["data"]["values.yaml"] = "ports: {}\n"
        self.assert_reports(objects, "is not deploy/platform/traefik-values.yaml")

    def test_another_gateway_api_tag_is_reported(self):
        objects = flux()
        find(objects, "GitRepository", "gateway-api")["spec"]["ref"]["tag"] = "v1.4.0"
        self.assert_reports(objects, "Gateway API CRDs: tag 'v1.4.0'")

    def test_another_repository_url_is_reported(self):
        objects = flux()
        find(objects, "GitRepository", "metrics-app")["spec"]["url"] = "https://example.com/x.git"
        self.assert_reports(objects, "GitRepository metrics-app: url")

    def test_an_environment_in_another_namespace_is_reported(self):
        objects = flux()
        find(objects, "HelmRelease", "metrics-app-dev")["spec"]["targetNamespace"] = "metrics-app"
        self.assert_reports(objects, "environment dev: HelmRelease metrics-app-dev targetNamespace 'metrics-app'")

    def test_an_environment_with_another_profile_is_reported(self):
        objects = flux()
        spec = find(objects, "HelmRelease", "metrics-app-dev")["spec"]["chart"]["spec"]
        spec["valuesFiles"] = ["./charts/metrics-app/values-dev.yaml"]  # the chart's defaults dropped
        self.assert_reports(objects, "valuesFiles")

    def test_an_environment_missing_in_flux_is_reported(self):
        argocd = copy.deepcopy(ARGOCD)
        argocd["environments"]["qa"] = dict(ARGOCD["environments"]["dev"], namespace="metrics-app-qa")
        errors = check(argocd, flux(), VALUES)
        self.assertIn("environment qa: no HelmRelease metrics-app-qa (add deploy/flux/apps/qa/kustomization.yaml)", errors)
        self.assertIn("environment qa: no Flux Kustomization metrics-app-qa (add deploy/flux/bootstrap/metrics-app-qa.yaml)", errors)

    def test_an_environment_only_in_flux_is_reported(self):
        objects = flux()
        extra = copy.deepcopy(find(objects, "HelmRelease", "metrics-app-dev"))
        extra["metadata"]["name"] = "metrics-app-qa"
        objects.append(extra)
        self.assert_reports(objects, "HelmRelease metrics-app-qa: no such environment")

    def redis_ha(self):
        """ARGOCD and flux() with dev on redisHA: redis-ha-dev, which metrics-app-dev depends on."""
        argocd = copy.deepcopy(ARGOCD)
        argocd["redisHA"] = {"repoURL": "https://dandydeveloper.github.io/charts", "chart": "redis-ha",
                             "version": "4.39.0", "wave": -1}
        argocd["environments"]["dev"]["redisHA"] = True
        objects = flux() + [
            obj("HelmRepository", "dandydeveloper", {"url": "https://dandydeveloper.github.io/charts"}),
            obj("HelmRelease", "redis-ha-dev", {
                "releaseName": "redis-ha", "targetNamespace": "metrics-app-dev",
                "chart": {"spec": {"chart": "redis-ha", "version": "4.39.0",
                                   "sourceRef": {"kind": "HelmRepository", "name": "dandydeveloper"}}},
                "valuesFrom": [{"kind": "ConfigMap", "name": "redis-ha-values-dev", "valuesKey": "values.yaml"}]}),
            {"kind": "ConfigMap", "metadata": {"name": "redis-ha-values-dev"}, "data": {"values.yaml": "replicas: 3\n"}},
        ]
        find(objects, "HelmRelease", "metrics-app-dev")["spec"]["dependsOn"] = [{"name": "redis-ha-dev"}]
        return argocd, objects, dict(VALUES, **{"redis-ha": "replicas: 3\n"})

    def test_an_environment_with_redis_ha_agrees_when_its_release_matches_the_pin(self):
        argocd, objects, values = self.redis_ha()
        self.assertEqual(check(argocd, objects, values), [])

    def test_redis_ha_missing_drifted_or_not_waited_for_is_reported(self):
        argocd, objects, values = self.redis_ha()
        self.assert_reports([o for o in objects if o["metadata"]["name"] != "redis-ha-dev"],
                            "environment dev: no HelmRelease redis-ha-dev in deploy/flux (redisHA: true)", argocd, values)
        argocd, objects, values = self.redis_ha()
        find(objects, "HelmRelease", "redis-ha-dev")["spec"]["chart"]["spec"]["version"] = "4.40.0"
        self.assert_reports(objects, "HelmRelease redis-ha-dev: chart version '4.40.0', deploy/argocd pins '4.39.0'", argocd, values)
        argocd, objects, values = self.redis_ha()
        find(objects, "HelmRelease", "redis-ha-dev")["spec"]["releaseName"] = "redis"
        self.assert_reports(objects, "releaseName 'redis', deploy/argocd uses 'redis-ha'", argocd, values)
        argocd, objects, values = self.redis_ha()
        del find(objects, "HelmRelease", "metrics-app-dev")["spec"]["dependsOn"]
        self.assert_reports(objects, "metrics-app-dev must dependsOn redis-ha-dev", argocd, values)

    def test_redis_ha_for_an_environment_without_redis_ha_is_reported(self):
        argocd, objects, values = self.redis_ha()
        argocd["environments"]["dev"]["redisHA"] = False
        self.assert_reports(objects, "HelmRelease redis-ha-dev: not a component of deploy/argocd/values.yaml (its environment has no redisHA)",
                            argocd, values)

    def test_argocd_values_without_environments_are_an_error_not_a_pass(self):
        argocd = {k: v for k, v in ARGOCD.items() if k != "environments"}
        self.assert_reports(flux(), "has no `environments` map", argocd=argocd)


if __name__ == "__main__":
    unittest.main()
