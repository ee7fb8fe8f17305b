"""Unit tests of the NetworkPolicy evaluator (netpol.py): each case is a rule of the
NetworkPolicy API that a wrong implementation would get wrong.

    .tools/venv/bin/python -m unittest discover -s scripts/lib -p 'test_*.py'
"""

import unittest

from netpol import Cluster, External, Pod, SelectorError, selector_matches

APP = {"app.kubernetes.io/name": "metrics-app", "app.kubernetes.io/instance": "m",
       "app.kubernetes.io/component": "server"}
VALKEY = {"app.kubernetes.io/name": "valkey", "app.kubernetes.io/instance": "m",
          "app.kubernetes.io/component": "store"}


def policy(ns, name, selector, ingress=None, egress=None, types=None):
    spec = {"podSelector": selector}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def pods():
    return {
        "app": Pod("metrics-app", "app", dict(APP), [("http", 8080, "TCP"), ("management", 9090, "TCP")]),
        "valkey": Pod("metrics-app", "valkey", dict(VALKEY), [("redis", 6379, "TCP")]),
        "traefik": Pod("gateway", "traefik", {"app.kubernetes.io/name": "traefik"}, [("web", 8000, "TCP")]),
        "prom": Pod("monitoring", "prometheus", {"app.kubernetes.io/name": "prometheus"}, [("web", 9090, "TCP")]),
        "stranger": Pod("default", "stranger", {"run": "x"}, []),
    }


class SelectorTests(unittest.TestCase):
    def test_empty_selector_matches_everything_and_none_matches_nothing(self):
        self.assertTrue(selector_matches({}, {"a": "b"}))
        self.assertFalse(selector_matches(None, {"a": "b"}))

    def test_match_labels_needs_every_label(self):
        self.assertTrue(selector_matches({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}))
        self.assertFalse(selector_matches({"matchLabels": {"a": "1", "c": "3"}}, {"a": "1"}))

    def test_match_expressions_operators(self):
        labels = {"tier": "web", "env": "prod"}
        self.assertTrue(selector_matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "db"]}]}, labels))
        self.assertFalse(selector_matches({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}, labels))
        self.assertTrue(selector_matches({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, labels))
        self.assertTrue(selector_matches({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, labels))
        self.assertFalse(selector_matches({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, labels))

    def test_unknown_operator_is_an_error_not_a_match(self):
        with self.assertRaises(SelectorError):
            selector_matches({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}, {"a": "b"})


class ReachabilityTests(unittest.TestCase):
    def test_a_pod_no_policy_selects_admits_everyone(self):
        p = pods()
        c = Cluster({}, p.values(), [])
        self.assertTrue(c.can_connect(p["stranger"], p["valkey"], "redis")[0])

    def test_once_selected_a_pod_admits_only_what_a_rule_allows(self):
        p = pods()
        pol = policy("metrics-app", "app", {"matchLabels": APP},
                     ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}],
                               "ports": [{"port": "http"}]}])
        c = Cluster({}, p.values(), [pol])
        self.assertTrue(c.can_connect(p["traefik"], p["app"], "http")[0])
        self.assertFalse(c.can_connect(p["traefik"], p["app"], "management")[0])
        self.assertFalse(c.can_connect(p["stranger"], p["app"], "http")[0])

    def test_a_policy_whose_selector_is_a_subset_of_valkeys_labels_isolates_valkey(self):
        # The bug of issue #12 item 3: the app's selector without a component label.
        p = pods()
        p["valkey"].labels.update({"app.kubernetes.io/name": "metrics-app"})
        wide = {"matchLabels": {"app.kubernetes.io/name": "metrics-app", "app.kubernetes.io/instance": "m"}}
        pol = policy("metrics-app", "app", wide, ingress=[{"ports": [{"port": "http"}]}])
        c = Cluster({}, p.values(), [pol])
        ok, why = c.can_connect(p["app"], p["valkey"], 6379)
        self.assertFalse(ok)
        self.assertIn("isolated by metrics-app/app", why)

    def test_pod_selector_alone_means_the_policys_namespace(self):
        p = pods()
        other_app = Pod("default", "app-elsewhere", dict(APP), [])
        pol = policy("metrics-app", "valkey", {"matchLabels": VALKEY},
                     ingress=[{"from": [{"podSelector": {"matchLabels": APP}}], "ports": [{"port": 6379}]}])
        c = Cluster({}, list(p.values()) + [other_app], [pol])
        self.assertTrue(c.can_connect(p["app"], p["valkey"], "redis")[0])
        self.assertFalse(c.can_connect(other_app, p["valkey"], "redis")[0])

    def test_namespace_and_pod_selector_in_one_peer_must_both_match(self):
        p = pods()
        peer = {"namespaceSelector": {"matchLabels": {"team": "obs"}}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
        pol = policy("metrics-app", "app", {"matchLabels": APP}, ingress=[{"from": [peer]}])
        other = Pod("monitoring", "grafana", {"app.kubernetes.io/name": "grafana"}, [])
        c = Cluster({"monitoring": {"team": "obs"}}, list(p.values()) + [other], [pol])
        self.assertTrue(c.can_connect(p["prom"], p["app"], "management")[0])
        self.assertFalse(c.can_connect(other, p["app"], "management")[0])

    def test_named_port_resolves_against_the_destination_pod(self):
        p = pods()
        pol = policy("metrics-app", "app", {"matchLabels": APP}, ingress=[{"ports": [{"port": "management"}]}])
        c = Cluster({}, p.values(), [pol])
        self.assertTrue(c.can_connect(p["prom"], p["app"], 9090)[0])
        self.assertFalse(c.can_connect(p["prom"], p["app"], 8080)[0])

    def test_protocol_must_match(self):
        p = pods()
        pol = policy("metrics-app", "app", {"matchLabels": APP}, ingress=[{"ports": [{"port": 8080, "protocol": "UDP"}]}])
        c = Cluster({}, p.values(), [pol])
        self.assertFalse(c.can_connect(p["traefik"], p["app"], 8080)[0])

    def test_end_port_gives_a_range(self):
        p = pods()
        pol = policy("metrics-app", "app", {"matchLabels": APP}, ingress=[{"ports": [{"port": 8000, "endPort": 8100}]}])
        c = Cluster({}, p.values(), [pol])
        self.assertTrue(c.can_connect(p["traefik"], p["app"], 8080)[0])
        self.assertFalse(c.can_connect(p["traefik"], p["app"], 9090)[0])

    def test_egress_deny_all_blocks_the_source_even_when_ingress_allows(self):
        p = pods()
        pol = policy("metrics-app", "valkey", {"matchLabels": VALKEY}, egress=[], types=["Ingress", "Egress"])
        c = Cluster({}, p.values(), [pol])
        ok, why = c.can_connect(p["valkey"], p["traefik"], "web")
        self.assertFalse(ok)
        self.assertIn("Egress", why)

    def test_policy_types_default_adds_egress_only_when_an_egress_section_exists(self):
        p = pods()
        ingress_only = policy("metrics-app", "a", {"matchLabels": APP}, ingress=[])
        c = Cluster({}, p.values(), [ingress_only])
        self.assertTrue(c.can_connect(p["app"], p["valkey"], "redis")[0])
        with_egress = policy("metrics-app", "b", {"matchLabels": APP}, egress=[{"to": [{"podSelector": {"matchLabels": {"x": "y"}}}]}])
        c = Cluster({}, p.values(), [with_egress])
        self.assertFalse(c.can_connect(p["app"], p["valkey"], "redis")[0])

    def test_policies_of_another_namespace_do_not_select(self):
        p = pods()
        pol = policy("default", "deny", {}, ingress=[])
        c = Cluster({}, p.values(), [pol])
        self.assertTrue(c.can_connect(p["stranger"], p["app"], "http")[0])
        # ...while the same policy isolates every pod of its own namespace.
        self.assertFalse(c.can_connect(p["app"], p["stranger"], 80)[0])

    def test_policies_add_up(self):
        p = pods()
        a = policy("metrics-app", "a", {"matchLabels": APP}, ingress=[{"ports": [{"port": "http"}]}])
        b = policy("metrics-app", "b", {"matchLabels": APP}, ingress=[{"ports": [{"port": "management"}]}])
        c = Cluster({}, p.values(), [a, b])
        self.assertTrue(c.can_connect(p["stranger"], p["app"], "http")[0])
        self.assertTrue(c.can_connect(p["stranger"], p["app"], "management")[0])

    def test_ip_block_with_except_for_external_clients(self):
        p = pods()
        pol = policy("gateway", "t", {}, ingress=[{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["192.0.2.0/24"]}}]}])
        c = Cluster({}, p.values(), [pol])
        self.assertTrue(c.can_connect(External("203.0.113.7"), p["traefik"], "web")[0])
        self.assertFalse(c.can_connect(External("192.0.2.9"), p["traefik"], "web")[0])

    def test_selectors_never_match_external_clients(self):
        p = pods()
        pol = policy("gateway", "t", {}, ingress=[{"from": [{"namespaceSelector": {}}]}])
        c = Cluster({}, p.values(), [pol])
        self.assertFalse(c.can_connect(External("203.0.113.7"), p["traefik"], "web")[0])
        self.assertTrue(c.can_connect(p["stranger"], p["traefik"], "web")[0])

    def test_egress_to_an_external_address_needs_an_ip_block(self):
        p = pods()
        pol = policy("metrics-app", "app", {"matchLabels": APP}, types=["Egress"],
                     egress=[{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]},
                             {"to": [{"namespaceSelector": {}}]}])
        c = Cluster({}, p.values(), [pol])
        self.assertTrue(c.can_connect(p["app"], External("203.0.113.7"), 443)[0])
        self.assertFalse(c.can_connect(p["app"], External("203.0.113.7"), 80)[0])
        self.assertFalse(c.can_connect(p["app"], External("198.51.100.1"), 443)[0])
        self.assertTrue(c.can_connect(p["valkey"], External("198.51.100.1"), 443)[0])

    def test_a_missing_named_port_is_denied_with_the_reason(self):
        p = pods()
        c = Cluster({}, p.values(), [])
        ok, why = c.can_connect(p["app"], p["valkey"], "http")
        self.assertFalse(ok)
        self.assertIn("no TCP port 'http'", why)


if __name__ == "__main__":
    unittest.main()
