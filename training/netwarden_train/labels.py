"""Label spelling and the attack families the model predicts.

CIC-IDS2017 spells labels several ways across releases (``Web Attack \x96 Brute Force`` with a
cp1252 dash, ``PortScan`` / ``Portscan``, ``DoS Slowhttptest`` / ``DoS slowhttptest``).
``canonical`` folds them onto one spelling; ``family`` maps a canonical label onto the coarse
class the model learns.  Families were chosen by measurement (see docs/training.md): the
per-tool DoS classes are near-identical per flow and the three web attacks have 104 rows in
all, so finer classes cost macro-F1 without helping the alert.
"""

from __future__ import annotations

import re

BENIGN = "BENIGN"

# canonical (lower-case, single-spaced, plain dash) -> family
_FAMILY: dict[str, str] = {
    "benign": BENIGN,
    "normal": BENIGN,
    "ddos": "DDoS",
    "dos hulk": "DoS",
    "dos goldeneye": "DoS",
    "dos slowloris": "DoS",
    "dos slowhttptest": "DoS",
    "dos": "DoS",
    "portscan": "PortScan",
    "port scan": "PortScan",
    "scan": "PortScan",
    "infiltration - portscan": "PortScan",
    "ftp-patator": "BruteForce",
    "ssh-patator": "BruteForce",
    "bruteforce": "BruteForce",
    "brute force": "BruteForce",
    "web attack - brute force": "WebAttack",
    "web attack - sql injection": "WebAttack",
    "web attack - xss": "WebAttack",
    "webattack": "WebAttack",
    "bot": "Botnet",
    "botnet": "Botnet",
    "infiltration": "Infiltration",
    "heartbleed": "Heartbleed",
}

ATTEMPTED_SUFFIX = " - attempted"


def canonical(label: str) -> str:
    """Fold a raw label onto one spelling.

    >>> canonical("Web Attack \\x96 Brute Force")
    'web attack - brute force'
    >>> canonical(" PortScan ")
    'portscan'
    """
    s = label.replace("\x96", "-").replace("\u2013", "-").replace("\ufffd", "-")
    s = re.sub(r"\s*-\s*", " - ", s.strip().lower())
    s = re.sub(r"\s+", " ", s)
    # tool names keep their own dash: "ftp - patator" -> "ftp-patator"
    return s.replace(" - patator", "-patator")


def family(label: str) -> str | None:
    """The family of a raw label, or None when it is unknown or an "attempted" attack.

    >>> family("DoS Hulk"), family("FTP-Patator"), family("Infiltration - Portscan")
    ('DoS', 'BruteForce', 'PortScan')
    >>> family("DoS Hulk - Attempted") is None
    True
    """
    c = canonical(label)
    if c.endswith(ATTEMPTED_SUFFIX):
        return None
    return _FAMILY.get(c) or _FAMILY.get(c.replace(" ", ""))


def is_attempted(label: str) -> bool:
    """True for Engelen et al.'s "X - Attempted" rows (attack tooling that did no harm)."""
    return canonical(label).endswith(ATTEMPTED_SUFFIX)
