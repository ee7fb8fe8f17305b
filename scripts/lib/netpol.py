"""NetworkPolicy reachability over rendered Kubernetes objects.

Answers "may endpoint A open a connection to endpoint B on port P?" the way the
NetworkPolicy API (networking.k8s.io/v1) defines it, from objects only - no cluster:

- a pod is isolated for ingress (egress) once any policy of its namespace selects it with
  that policy type; an isolated pod admits only what some selecting policy's rules allow,
  a pod no policy selects admits everything ("default deny once selected");
- `policyTypes` defaults to Ingress, plus Egress when the policy has an `egress` section;
- a peer is a podSelector (pods of the policy's namespace), a namespaceSelector (every pod of
  the matching namespaces), both (matching pods in matching namespaces), or an ipBlock
  (addresses, with `except`); an empty `from`/`to` list or a rule without it matches every
  peer, a rule without `ports` every port;
- selectors: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist); `{}`
  selects everything;
- a named port in a rule is resolved against the destination pod's container ports (for
  ingress: the selected pod; for egress: the pod connected to), with the protocol; `endPort`
  gives a range;
- a connection needs both the source's egress and the destination's ingress to allow it.

Pods get synthetic addresses from POD_CIDR, so an ipBlock such as 0.0.0.0/0 matches them as
a CNI would; endpoints outside the cluster are given by address. Policies of a CNI's own API
(CiliumNetworkPolicy, ...) are not evaluated; callers list them as not covered.
"""

import ipaddress
from dataclasses import dataclass, field

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")


@dataclass
class Pod:
    """A pod (or a workload's pod template) with what policies match on."""

    namespace: str
    name: str
    labels: dict
    # (name, port, protocol) of every container port; names may be None.
    ports: list = field(default_factory=list)
    ip: str = ""

    def port_number(self, port, protocol="TCP"):
        """The number of a named or numbered port on this pod, or None if it has no such port."""
        if isinstance(port, int):
            return port
        if isinstance(port, str) and port.isdigit():
            return int(port)
        for name, number, proto in self.ports:
            if name == port and proto == protocol:
                return number
        return None


@dataclass
class External:
    """An endpoint outside the cluster (a host behind a NodePort, the internet)."""

    ip: str
    name: str = "external"


class SelectorError(ValueError):
    """A selector the API server would reject (unknown operator, missing values)."""


def selector_matches(selector, labels):
    """Whether a LabelSelector matches a label set. None matches nothing, {} everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            if not values:
                raise SelectorError(f"matchExpressions {key} In needs values")
            if labels.get(key) not in values:
                return False
        elif op == "NotIn":
            if not values:
                raise SelectorError(f"matchExpressions {key} NotIn needs values")
            if key in labels and labels[key] in values:
                return False
        elif op == "Exists":
            if key not in labels:
                return False
        elif op == "DoesNotExist":
            if key in labels:
                return False
        else:
            raise SelectorError(f"matchExpressions {key}: unknown operator {op!r}")
    return True


def policy_types(policy):
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return set(types)
    return {"Ingress", "Egress"} if "egress" in spec else {"Ingress"}


class Cluster:
    """Namespaces, pods and NetworkPolicies; answers reachability questions."""

    def __init__(self, namespaces, pods, policies):
        # namespace name -> labels (kubernetes.io/metadata.name is always added, as the API does)
        self.namespaces = {}
        for name, labels in namespaces.items():
            self.namespaces[name] = dict(labels or {}, **{"kubernetes.io/metadata.name": name})
        self.pods = list(pods)
        for i, pod in enumerate(self.pods):
            if pod.namespace not in self.namespaces:
                self.namespaces[pod.namespace] = {"kubernetes.io/metadata.name": pod.namespace}
            if not pod.ip:
                pod.ip = str(POD_CIDR.network_address + 10 + i)
        self.policies = list(policies)

    def selecting(self, pod, direction):
        """The policies of the pod's namespace that select it for `direction`."""
        out = []
        for pol in self.policies:
            if (pol.get("metadata") or {}).get("namespace") != pod.namespace:
                continue
            if direction not in policy_types(pol):
                continue
            if selector_matches((pol.get("spec") or {}).get("podSelector") or {}, pod.labels):
                out.append(pol)
        return out

    def _peer_matches(self, peer, policy_ns, other):
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            addr = ipaddress.ip_address(other.ip)
            if addr not in ipaddress.ip_network(block["cidr"], strict=False):
                return False
            return not any(addr in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])
        if isinstance(other, External):
            return False  # pod and namespace selectors only ever match pods
        ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
        if ns_sel is None and pod_sel is None:
            raise SelectorError("a NetworkPolicy peer needs podSelector, namespaceSelector or ipBlock")
        if ns_sel is None:
            if other.namespace != policy_ns:
                return False
        elif not selector_matches(ns_sel, self.namespaces.get(other.namespace, {})):
            return False
        return pod_sel is None or selector_matches(pod_sel, other.labels)

    @staticmethod
    def _port_matches(rule_ports, dst, port, protocol):
        """Whether a rule's `ports` admit `port` (a number) on the destination pod."""
        if not rule_ports:
            return True
        for rp in rule_ports:
            proto = rp.get("protocol", "TCP")
            if proto != protocol:
                continue
            if "port" not in rp:
                return True  # all ports of that protocol
            number = dst.port_number(rp["port"], proto) if isinstance(dst, Pod) else (
                rp["port"] if isinstance(rp["port"], int) else None)
            if number is None:
                continue
            end = rp.get("endPort", number)
            if number <= port <= end:
                return True
        return False

    def _allowed(self, pod, direction, other, dst, port, protocol):
        """(allowed, reason) for one side: `pod`'s policies for traffic with `other`."""
        selecting = self.selecting(pod, direction)
        if not selecting:
            return True, f"{pod.namespace}/{pod.name}: no {direction} policy selects it"
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for pol in selecting:
            pol_ns = pol["metadata"]["namespace"]
            for rule in (pol.get("spec") or {}).get(key) or []:
                peers = rule.get(peers_key)
                if peers and not any(self._peer_matches(p, pol_ns, other) for p in peers):
                    continue
                if self._port_matches(rule.get("ports"), dst, port, protocol):
                    return True, f"allowed by {pol_ns}/{pol['metadata']['name']}"
        names = ", ".join(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in selecting)
        return False, f"{pod.namespace}/{pod.name}: {direction} isolated by {names}, no rule admits it"

    def can_connect(self, src, dst, port, protocol="TCP"):
        """(allowed, reason): may `src` (Pod or External) connect to `dst` (Pod or External)
        on `port`?

        `port` is a number or a name of one of dst's container ports. To an External
        destination only the source's egress applies, and the port must be a number.
        """
        if isinstance(dst, External):
            if not isinstance(port, int):
                return False, f"a port of an external address must be a number, not {port!r}"
            if isinstance(src, External):
                return True, "outside the cluster: no NetworkPolicy applies"
            return self._allowed(src, "Egress", dst, dst, port, protocol)
        number = dst.port_number(port, protocol)
        if number is None:
            return False, f"{dst.namespace}/{dst.name} has no {protocol} port {port!r}"
        if isinstance(src, Pod):
            ok, why = self._allowed(src, "Egress", dst, dst, number, protocol)
            if not ok:
                return False, why
        ok, why = self._allowed(dst, "Ingress", src, dst, number, protocol)
        return ok, why
