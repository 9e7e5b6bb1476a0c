"""Label selectors (equality- and set-based, as kubectl and kopf send them) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable

Matcher = Callable[[dict], bool]

_SET_RE = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses: `a in (x,y),b=c` -> two terms."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Matcher:
    if match := _EQ_RE.match(term):
        key, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _SET_RE.match(term):
        negated, key, op, values = match.groups()
        if op is None:
            return (lambda labels: key not in labels) if negated else (lambda labels: key in labels)
        allowed = {v.strip() for v in values.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in allowed
        return lambda labels: labels.get(key) not in allowed
    raise ValueError(f"unable to parse requirement {term!r}: use key=value, key in (a,b), !key")


def label_matcher(selector: str | None) -> Matcher:
    """A predicate on an object's labels; raises ValueError (HTTP 400) for a bad selector."""
    terms = [_label_term(t) for t in _split_terms(selector or "")]
    return lambda obj: all(t(obj.get("metadata", {}).get("labels") or {}) for t in terms)


def match_labels_selector(selector: dict | None) -> Matcher:
    """A predicate from a LabelSelector object (matchLabels + matchExpressions)."""
    selector = selector or {}
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op, key = expr["operator"], expr["key"]
        if op in ("In", "NotIn"):
            terms.append(f"{key} {op.lower()} ({','.join(expr.get('values', []))})")
        else:
            terms.append(key if op == "Exists" else f"!{key}")
    return label_matcher(",".join(terms))


def field_value(obj: dict, path: str) -> str | None:
    value: object = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def field_matcher(selector: str | None) -> Matcher:
    """Field selectors like `metadata.name=x,status.phase!=Running` on any dotted path."""
    terms = []
    for term in _split_terms(selector or ""):
        match = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise ValueError(f"invalid field selector {term!r}: use path=value or path!=value")
        path, op, value = match.groups()
        terms.append((path, op == "!=", value))
    return lambda obj: all((field_value(obj, p) == v) != neg for p, neg, v in terms)
