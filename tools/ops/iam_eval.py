"""Whether an IAM policy document allows an action on a resource, and what a
template's policy says once its intrinsic functions are resolved.

Enough of IAM's evaluation to check the project's own policies: Allow and
Deny statements, ``Action``/``NotAction``, ``Resource``/``NotResource``,
the ``*`` and ``?`` wildcards (actions case-insensitive, resources not); an
explicit Deny wins. A statement with a ``Condition`` is refused rather
than guessed at. Standard library only.
"""
import re


class PolicyError(ValueError):
    """A policy this evaluator cannot judge exactly."""


def listed(value):
    """A policy element's values as a list (IAM lets one value stand
    alone), or None when it is neither a string nor a list."""
    return [value] if isinstance(value, str) else list(value) if isinstance(value, list) else None


def _matches(pattern, value, ignore_case):
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _applies(statement, action, resource):
    if "Condition" in statement:
        raise PolicyError("a statement with a Condition cannot be evaluated here: %r"
                          % (statement,))
    if "Action" in statement:
        acted = any(_matches(p, action, True) for p in listed(statement["Action"]))
    else:
        acted = not any(_matches(p, action, True) for p in listed(statement["NotAction"]))
    if "Resource" in statement:
        on = any(_matches(p, resource, False) for p in listed(statement["Resource"]))
    else:
        on = not any(_matches(p, resource, False) for p in listed(statement["NotResource"]))
    return acted and on


def statements(policy):
    """The policy's statements as a list of objects (IAM lets one stand
    alone), or PolicyError."""
    found = policy.get("Statement", []) if isinstance(policy, dict) else None
    if isinstance(found, dict):
        found = [found]
    if not isinstance(found, list) or not all(isinstance(st, dict) for st in found):
        raise PolicyError("a policy's Statement must be a statement or a list of them")
    return found


def allows(policy, action, resource):
    """True when ``policy`` allows ``action`` on ``resource`` (an ARN)."""
    verdicts = [st["Effect"] for st in statements(policy) if _applies(st, action, resource)]
    return "Allow" in verdicts and "Deny" not in verdicts


def grants(policy):
    """``{(action, resource)}`` of a policy of plain Allow statements (no
    NotAction, NotResource, Deny or Condition), so that an equality check
    on the result states exactly what the policy grants."""
    found = set()
    for st in statements(policy):
        if st.get("Effect") != "Allow" or not set(st) <= {"Sid", "Effect", "Action", "Resource"}:
            raise PolicyError("not a plain Allow statement: %r" % (st,))
        found |= {(a, r) for a in listed(st["Action"]) for r in listed(st["Resource"])}
    return found


def resolve(value, names):
    """``value`` with ``Ref``, ``Fn::GetAtt`` and string ``Fn::Sub`` replaced
    from ``names`` (``{"AWS::Region": ..., "BatchQueue.Arn": ...}``)."""
    if isinstance(value, list):
        return [resolve(v, names) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return names[value["Ref"]]
    if set(value) == {"Fn::GetAtt"}:
        return names[".".join(value["Fn::GetAtt"])]
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([^}!][^}]*)\}", lambda m: names[m.group(1)], value["Fn::Sub"])
    return {k: resolve(v, names) for k, v in value.items()}
