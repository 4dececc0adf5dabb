"""A validator of our own: checks a protobuf message against the protoc-gen-validate rules
(`validate.rules`, `validate.required`, `validate.disabled`) that the official Envoy API protos
carry, read from the message descriptors at run time, applied recursively — into sub-messages,
repeated fields, map values and the messages packed in `Any` (as Envoy does when it converts a
typed config) — and a few semantic rules Envoy applies beyond the field rules (see `semantic`).

Only the Python modules generated at build time (HOLDFAST_PB_PY) and Debian's python3-protobuf
are used. `validate(msg)` returns a list of human-readable violations, each naming the path of
the offending field; an empty list means valid."""

import importlib
import ipaddress
import os
import re
import sys
import urllib.parse

PB_PY = os.environ.get("HOLDFAST_PB_PY", "")
if PB_PY and PB_PY not in sys.path:
    sys.path.insert(0, PB_PY)

from google.protobuf import symbol_database  # noqa: E402
from google.protobuf.descriptor import FieldDescriptor as FD  # noqa: E402
from validate import validate_pb2  # noqa: E402

_loaded = False


def load_all():
    """Imports every generated module so that any type URL of the closure can be unpacked."""
    global _loaded
    if _loaded or not PB_PY:
        return
    for d, _, files in os.walk(PB_PY):
        for f in files:
            if f.endswith("_pb2.py"):
                rel = os.path.relpath(os.path.join(d, f[:-3]), PB_PY)
                importlib.import_module(rel.replace(os.sep, "."))
    _loaded = True


WRAPPERS = {
    "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
}
NUMERIC = ("float", "double", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
           "fixed32", "fixed64", "sfixed32", "sfixed64")
HEADER_NAME = re.compile(r"^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$")
HEADER_VALUE_STRICT = re.compile("^[^\u0000-\u0008\u000A-\u001F\u007F]*$")
HEADER_VALUE_LOOSE = re.compile("^[^\u0000\u000A\u000D]*$")


def _rules(field):
    opts = field.GetOptions()
    if opts.HasExtension(validate_pb2.rules):
        return opts.Extensions[validate_pb2.rules]
    return None


def _dur(d):
    return d.seconds * 10**9 + d.nanos


def is_hostname(s):
    if not s or len(s) > 253:
        return False
    s = s[:-1] if s.endswith(".") else s
    return all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", p) for p in s.split("."))


def is_ip(s, version=None):
    try:
        a = ipaddress.ip_address(s)
    except ValueError:
        return False
    return version is None or a.version == version


class Validator:
    def __init__(self):
        load_all()
        self.errors = []

    def err(self, path, what):
        self.errors.append("%s: %s" % (path or "<root>", what))

    # --- messages ---------------------------------------------------------------------------

    def message(self, msg, path):
        d = msg.DESCRIPTOR
        if d.full_name == "google.protobuf.Any":
            self.any_contents(msg, path)
            return
        mopts = d.GetOptions()
        if mopts.HasExtension(validate_pb2.disabled) and mopts.Extensions[validate_pb2.disabled]:
            return
        for oneof in d.oneofs:
            oo = oneof.GetOptions()
            if oo.HasExtension(validate_pb2.required) and oo.Extensions[validate_pb2.required]:
                if msg.WhichOneof(oneof.name) is None:
                    self.err(path, "oneof %s is required" % oneof.name)
        for f in d.fields:
            self.field(msg, f, "%s.%s" % (path, f.name) if path else f.name)

    def any_contents(self, any_msg, path):
        """Envoy unpacks a typed config and validates it: so do we."""
        if not any_msg.type_url:
            self.err(path, "Any without type_url")
            return
        name = any_msg.type_url.rsplit("/", 1)[-1]
        try:
            cls = symbol_database.Default().GetSymbol(name)
        except KeyError:
            self.err(path, "Any of unknown type %s" % any_msg.type_url)
            return
        inner = cls()
        if not any_msg.Unpack(inner):
            self.err(path, "Any does not decode as %s" % name)
            return
        self.message(inner, "%s<%s>" % (path, name.rsplit(".", 1)[-1]))

    def field(self, msg, f, path):
        rules = _rules(f)
        if f.label == FD.LABEL_REPEATED:
            values = getattr(msg, f.name)
            if f.message_type is not None and f.message_type.GetOptions().map_entry:
                self.map_field(values, f, rules, path)
            else:
                self.repeated_field(values, f, rules, path)
            return
        if f.containing_oneof is not None and not msg.HasField(f.name):
            return  # rules apply to the member that is set (the oneof may be required)
        if f.type == FD.TYPE_MESSAGE and not msg.HasField(f.name):
            if rules is not None:
                self.missing(f, rules, path)
            return
        self.value(getattr(msg, f.name), f, rules, path)

    def missing(self, f, rules, path):
        kind = rules.WhichOneof("type")
        if rules.HasField("message") and rules.message.required:
            self.err(path, "value is required")
        elif kind == "duration" and rules.duration.required:
            self.err(path, "duration is required")
        elif kind == "timestamp" and rules.timestamp.required:
            self.err(path, "timestamp is required")
        elif kind == "any" and rules.any.required:
            self.err(path, "Any is required")

    def value(self, v, f, rules, path):
        """One present value (a singular field, an item of a repeated field or a map value)."""
        kind = rules.WhichOneof("type") if rules is not None else None
        if f.type == FD.TYPE_MESSAGE:
            full = f.message_type.full_name
            if kind is not None and full in WRAPPERS:
                self.scalar(v.value, kind, getattr(rules, kind), f, path)
            elif kind == "duration":
                self.duration(v, rules.duration, path)
            elif kind == "any":
                self.any_rules(v, rules.any, path)
            if rules is not None and rules.HasField("message") and rules.message.skip:
                return
            self.message(v, path)
            return
        if kind is not None:
            self.scalar(v, kind, getattr(rules, kind), f, path)

    def repeated_field(self, values, f, rules, path):
        if rules is not None and rules.WhichOneof("type") == "repeated":
            r = rules.repeated
            if r.HasField("min_items") and len(values) < r.min_items:
                self.err(path, "needs at least %d items, has %d" % (r.min_items, len(values)))
            if r.HasField("max_items") and len(values) > r.max_items:
                self.err(path, "allows at most %d items, has %d" % (r.max_items, len(values)))
            if r.unique:
                keys = [v.SerializeToString(deterministic=True) if f.type == FD.TYPE_MESSAGE else v
                        for v in values]
                if len(set(keys)) != len(keys):
                    self.err(path, "items must be unique")
            item_rules = r.items if r.HasField("items") else None
        else:
            item_rules = None
        for i, v in enumerate(values):
            self.value(v, f, item_rules, "%s[%d]" % (path, i))

    def map_field(self, m, f, rules, path):
        kf = f.message_type.fields_by_name["key"]
        vf = f.message_type.fields_by_name["value"]
        key_rules = val_rules = None
        if rules is not None and rules.WhichOneof("type") == "map":
            r = rules.map
            if r.HasField("min_pairs") and len(m) < r.min_pairs:
                self.err(path, "needs at least %d pairs" % r.min_pairs)
            if r.HasField("max_pairs") and len(m) > r.max_pairs:
                self.err(path, "allows at most %d pairs" % r.max_pairs)
            key_rules = r.keys if r.HasField("keys") else None
            val_rules = r.values if r.HasField("values") else None
        for k in sorted(m):
            p = "%s[%r]" % (path, k)
            if key_rules is not None:
                self.value(k, kf, key_rules, p + "<key>")
            self.value(m[k], vf, val_rules, p)

    # --- rule kinds -------------------------------------------------------------------------

    def scalar(self, v, kind, r, f, path):
        if kind in NUMERIC:
            self.numeric(v, r, path)
        elif kind == "bool":
            if r.HasField("const") and v != r.const:
                self.err(path, "must be %s" % r.const)
        elif kind == "string":
            self.string(v, r, path)
        elif kind == "bytes":
            self.bytes_(v, r, path)
        elif kind == "enum":
            self.enum(v, r, f, path)

    def numeric(self, v, r, path):
        if r.HasField("const") and v != r.const:
            self.err(path, "must equal %s, is %s" % (r.const, v))
        lo_ok = True
        hi_ok = True
        if r.HasField("gt"):
            lo_ok = v > r.gt
        if r.HasField("gte"):
            lo_ok = v >= r.gte
        if r.HasField("lt"):
            hi_ok = v < r.lt
        if r.HasField("lte"):
            hi_ok = v <= r.lte
        lo = r.gt if r.HasField("gt") else (r.gte if r.HasField("gte") else None)
        hi = r.lt if r.HasField("lt") else (r.lte if r.HasField("lte") else None)
        if lo is not None and hi is not None and hi < lo:
            # An exclusive range (PGV): the value must lie outside [hi, lo].
            if lo_ok or hi_ok:
                return
            self.err(path, "%s is inside the excluded range" % v)
            return
        if not lo_ok or not hi_ok:
            self.err(path, "%s is out of range (%s)" % (v, str(r).replace("\n", " ").strip()))
        if len(getattr(r, "in")) and v not in getattr(r, "in"):
            self.err(path, "%s is not in %s" % (v, list(getattr(r, "in"))))
        if v in r.not_in:
            self.err(path, "%s is not allowed" % v)

    def string(self, s, r, path):
        if r.ignore_empty and s == "":
            return
        n = len(s)
        b = len(s.encode())
        checks = [("const", lambda: s == r.const), ("len", lambda: n == r.len),
                  ("min_len", lambda: n >= r.min_len), ("max_len", lambda: n <= r.max_len),
                  ("len_bytes", lambda: b == r.len_bytes), ("min_bytes", lambda: b >= r.min_bytes),
                  ("max_bytes", lambda: b <= r.max_bytes),
                  ("pattern", lambda: re.search(r.pattern, s) is not None),
                  ("prefix", lambda: s.startswith(r.prefix)), ("suffix", lambda: s.endswith(r.suffix)),
                  ("contains", lambda: r.contains in s),
                  ("not_contains", lambda: r.not_contains not in s)]
        for name, ok in checks:
            if r.HasField(name) and not ok():
                self.err(path, "string %r fails %s %r" % (s, name, getattr(r, name)))
        if len(getattr(r, "in")) and s not in getattr(r, "in"):
            self.err(path, "string %r not in %s" % (s, list(getattr(r, "in"))))
        if s in r.not_in:
            self.err(path, "string %r is not allowed" % s)
        wk = r.WhichOneof("well_known")
        if wk is None or (wk != "well_known_regex" and not getattr(r, wk)):
            return
        ok = {
            "email": lambda: re.fullmatch(r"[^@\s]+@[^@\s]+", s) is not None,
            "hostname": lambda: is_hostname(s),
            "ip": lambda: is_ip(s), "ipv4": lambda: is_ip(s, 4), "ipv6": lambda: is_ip(s, 6),
            "address": lambda: is_ip(s) or is_hostname(s),
            "uri": lambda: bool(urllib.parse.urlparse(s).scheme),
            "uri_ref": lambda: True,
            "uuid": lambda: re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", s) is not None,
            "well_known_regex": lambda: self.header_regex(s, r),
        }[wk]
        if not ok():
            self.err(path, "string %r is not a valid %s" % (s, wk))

    @staticmethod
    def header_regex(s, r):
        if r.well_known_regex == validate_pb2.HTTP_HEADER_NAME:
            return (not r.strict) or HEADER_NAME.match(s) is not None
        if r.well_known_regex == validate_pb2.HTTP_HEADER_VALUE:
            rx = HEADER_VALUE_STRICT if r.strict else HEADER_VALUE_LOOSE
            return rx.match(s) is not None
        return True

    def bytes_(self, v, r, path):
        if r.HasField("min_len") and len(v) < r.min_len:
            self.err(path, "bytes shorter than %d" % r.min_len)
        if r.HasField("max_len") and len(v) > r.max_len:
            self.err(path, "bytes longer than %d" % r.max_len)
        if r.HasField("len") and len(v) != r.len:
            self.err(path, "bytes length must be %d" % r.len)
        if r.HasField("const") and v != r.const:
            self.err(path, "bytes must equal the constant")

    def enum(self, v, r, f, path):
        if r.defined_only and f.enum_type.values_by_number.get(v) is None:
            self.err(path, "enum value %d is not defined in %s" % (v, f.enum_type.full_name))
        if r.HasField("const") and v != r.const:
            self.err(path, "enum must be %d" % r.const)
        if len(getattr(r, "in")) and v not in getattr(r, "in"):
            self.err(path, "enum %d not in %s" % (v, list(getattr(r, "in"))))
        if v in r.not_in:
            self.err(path, "enum %d is not allowed" % v)

    def duration(self, d, r, path):
        if d.nanos < -999999999 or d.nanos > 999999999 or (d.seconds > 0 > d.nanos) or \
                (d.seconds < 0 < d.nanos):
            self.err(path, "malformed duration")
            return
        v = _dur(d)
        for name, ok in (("const", lambda x: v == x), ("lt", lambda x: v < x), ("lte", lambda x: v <= x),
                         ("gt", lambda x: v > x), ("gte", lambda x: v >= x)):
            if r.HasField(name) and not ok(_dur(getattr(r, name))):
                self.err(path, "duration %ss fails %s %ss" % (v / 1e9, name, _dur(getattr(r, name)) / 1e9))
        if len(getattr(r, "in")) and v not in [_dur(x) for x in getattr(r, "in")]:
            self.err(path, "duration not in the allowed set")
        if v in [_dur(x) for x in r.not_in]:
            self.err(path, "duration is not allowed")

    def any_rules(self, a, r, path):
        if len(getattr(r, "in")) and a.type_url not in getattr(r, "in"):
            self.err(path, "Any type %s not in %s" % (a.type_url, list(getattr(r, "in"))))
        if a.type_url in r.not_in:
            self.err(path, "Any type %s is not allowed" % a.type_url)


def validate(msg, path=""):
    """Every `validate.rules` violation in msg (recursively, Any included); [] if none."""
    v = Validator()
    v.message(msg, path)
    return v.errors


# --- Envoy's semantic rules beyond the field annotations ----------------------------------------

HCM_URL = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
           "HttpConnectionManager")
ROUTER_URL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def _hcm(any_msg):
    from envoy.extensions.filters.network.http_connection_manager.v3 import \
        http_connection_manager_pb2 as hcm_pb2
    h = hcm_pb2.HttpConnectionManager()
    return h if any_msg.type_url == HCM_URL and any_msg.Unpack(h) else None


def hcms(listener):
    """Every HttpConnectionManager of a listener (filter chains and API listener)."""
    out = []
    if listener.HasField("api_listener"):
        h = _hcm(listener.api_listener.api_listener)
        if h is None:
            out.append((listener.name + ".api_listener", None))
        else:
            out.append((listener.name + ".api_listener", h))
    for i, chain in enumerate(listener.filter_chains):
        for j, f in enumerate(chain.filters):
            if f.name == "envoy.filters.network.http_connection_manager":
                out.append(("%s.filter_chains[%d].filters[%d]" % (listener.name, i, j),
                            _hcm(f.typed_config)))
    return out


def route_table_errors(rc, clusters, where):
    """Domains unique per table (lower-cased, as Envoy compares them), wildcards well formed, and
    every route's cluster defined."""
    errs = []
    seen = {}
    for vh in rc.virtual_hosts:
        for dom in vh.domains:
            key = dom.lower()
            if key in seen:
                errs.append("%s: domain %r of virtual host %s duplicates %s" % (where, dom, vh.name, seen[key]))
            seen[key] = vh.name
            if "*" in dom and dom != "*" and not (dom.startswith("*") ^ dom.endswith("*")):
                errs.append("%s: domain %r has a wildcard in the middle" % (where, dom))
            if dom.count("*") > 1:
                errs.append("%s: domain %r has more than one wildcard" % (where, dom))
        for r in vh.routes:
            if r.HasField("route"):
                targets = []
                if r.route.WhichOneof("cluster_specifier") == "cluster":
                    targets = [r.route.cluster]
                elif r.route.WhichOneof("cluster_specifier") == "weighted_clusters":
                    targets = [w.name for w in r.route.weighted_clusters.clusters]
                for t in targets:
                    if t not in clusters:
                        errs.append("%s: virtual host %s routes to unknown cluster %r" % (where, vh.name, t))
    return errs


UPSTREAM_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def upstream_errors(clusters):
    """ALPN-based auto_config needs a transport socket that does ALPN (TLS): Envoy refuses the
    cluster otherwise ("ALPN configured for cluster ... which has a non-ALPN transport socket")."""
    from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as up_pb2
    errs = []
    for c in clusters:
        if UPSTREAM_KEY not in c.typed_extension_protocol_options:
            continue
        o = up_pb2.HttpProtocolOptions()
        if not c.typed_extension_protocol_options[UPSTREAM_KEY].Unpack(o):
            errs.append("cluster %s: upstream HttpProtocolOptions do not decode" % c.name)
        elif o.WhichOneof("upstream_protocol_options") == "auto_config" and \
                not c.HasField("transport_socket"):
            errs.append("cluster %s: auto_config (ALPN) on a plaintext cluster" % c.name)
    return errs


def semantic(listeners, routes, clusters, assignments):
    """Envoy's rules across resources: the router is the last HTTP filter and appears once,
    referenced route tables and clusters exist, domains are unique per route table, every EDS
    cluster has a ClusterLoadAssignment of the same name (and no stray ones), resource names
    unique per type."""
    errs = []
    for kind, items in (("listener", listeners), ("route", routes), ("cluster", clusters),
                        ("assignment", assignments)):
        names = [x.name if kind != "assignment" else x.cluster_name for x in items]
        if len(set(names)) != len(names):
            errs.append("duplicate %s names: %s" % (kind, sorted(names)))
    cluster_names = {c.name for c in clusters}
    route_names = {r.name: r for r in routes}
    for ls in listeners:
        for where, h in hcms(ls):
            if h is None:
                errs.append("%s: HttpConnectionManager does not decode" % where)
                continue
            filters = list(h.http_filters)
            if not filters or filters[-1].typed_config.type_url != ROUTER_URL:
                errs.append("%s: the router is not the last HTTP filter" % where)
            if sum(f.typed_config.type_url == ROUTER_URL for f in filters) > 1:
                errs.append("%s: more than one router filter" % where)
            names = [f.name for f in filters]
            if len(set(names)) != len(names):
                errs.append("%s: HTTP filter names repeat: %s" % (where, names))
            spec = h.WhichOneof("route_specifier")
            if spec == "rds":
                if h.rds.route_config_name not in route_names:
                    errs.append("%s: route table %r is never sent" % (where, h.rds.route_config_name))
            elif spec == "route_config":
                errs.extend(route_table_errors(h.route_config, cluster_names, where))
            else:
                errs.append("%s: no route specifier" % where)
    for rc in routes:
        errs.extend(route_table_errors(rc, cluster_names, "route " + rc.name))
    errs.extend(upstream_errors(clusters))
    eds_names = set()
    for c in clusters:
        if c.WhichOneof("cluster_discovery_type") == "type" and c.type == c.EDS:
            eds_names.add(c.eds_cluster_config.service_name or c.name)
    cla_names = {a.cluster_name for a in assignments}
    for n in sorted(eds_names - cla_names):
        errs.append("EDS cluster %r has no ClusterLoadAssignment" % n)
    for n in sorted(cla_names - eds_names):
        errs.append("ClusterLoadAssignment %r matches no EDS cluster" % n)
    return errs
