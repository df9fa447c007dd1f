"""When two questions are the same question: the exact tier's normal form and the semantic
tier's near-miss guard. Pure functions, no database, no model.

Invariant: `normalise` only erases differences that never change an answer (case, Unicode
form, spacing, sentence punctuation, curly quotes); anything that might (`C++` vs `C#`,
`3.11` vs `311`, `-5` vs `5`, `can't` vs `can`) survives it. So the exact tier, which
compares normal forms, never serves a different question.

`near_miss(cached, new)` names the first reason the semantic tier must not serve the cached
question's answer to the new one, or returns None. Embedding distance shortlists candidates;
this guard refuses the small edits that change meaning but barely move an embedding:

- numbers (digits and number words) must be the same multiset;
- negations (not, no, never, n't, without, unless, …) must be equally many;
- swapped roles: a word that follows `from` in one question and `to` in the other
  ("ship to Canada" / "ship from Canada", "monthly to yearly" / "yearly to monthly");
- contrasting words: each group of opposites (upgrade/downgrade, import/export, monthly/yearly,
  public/private, …) must contribute the same members in the same order;
- named things: proper nouns, acronyms, versions, code-like tokens, emails, URLs and quoted
  text must be the same set;
- different things: every content word that one question has and the other lacks must be a
  phrasing word (how, help, want, reset/change, …) or a listed synonym of a word in the other.
  The last rule is deliberately strict: it refuses many true paraphrases ("cancel my
  subscription" / "stop paying for my plan"), and a refused paraphrase only costs one model
  call, while a served near-miss gives someone a wrong answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

# Curly quotes, dashes and odd spaces become their plain forms before anything else.
_PLAIN = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2013": "-",
        "\u2014": " - ",
        "\u2212": "-",
        "\u00a0": " ",
    }
)
# Sentence punctuation at the edges of a whitespace-separated token; symbols inside a token
# (c++, c#, node.js, 3.11, $20, 20%, a/b, full-time, can't) are kept.
_EDGE_PUNCT = "\"'()[]{}<>«»¿¡*_`"
_TRAILING = ".,!?;:…"


def normalise(text: str) -> str:
    """The exact tier's normal form of a question (see the module's invariant)."""
    text = unicodedata.normalize("NFKC", text).translate(_PLAIN).casefold()
    tokens = []
    for raw in text.split():
        token = raw.strip(_EDGE_PUNCT)
        token = token.rstrip(_TRAILING).strip(_EDGE_PUNCT)
        if token:
            tokens.append(token)
    return " ".join(tokens)


_TOKEN = re.compile(r"[a-z0-9][a-z0-9'._+#/@-]*[a-z0-9+#]|[a-z0-9]")

NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        (
            "zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
        ).split()
    )
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
    "dozen": "12",
    "half": "0.5",
    "once": "1",
    "twice": "2",
    "single": "1",
    "double": "2",
    "triple": "3",
}
ORDINALS = {
    "first": "1st",
    "second": "2nd",
    "third": "3rd",
    "fourth": "4th",
    "fifth": "5th",
    "last": "last",
}
NEGATIONS = frozenset(
    """
    not no never none nobody nothing neither nor without unless cannot cant dont doesnt
    didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt
    neednt except excluding non un-
    """.split()
)
# The preposition before a word gives it a role; the same word in two roles is a swap.
ROLE_WORDS = {
    "from": "from",
    "out": "from",
    "off": "from",
    "to": "to",
    "into": "to",
    "onto": "to",
    "towards": "to",
    "toward": "to",
    "for": "for",
    "than": "than",
    "versus": "vs",
    "vs": "vs",
    "over": "over",
    "instead": "instead",
}
# Groups of words that contrast; within a group each word maps to one member.
_CONTRASTS: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("upgrade", "upgrading", "upgraded"), ("downgrade", "downgrading", "downgraded")),
    (
        ("increase", "increasing", "raise", "raising", "bump", "higher", "more", "extend"),
        ("decrease", "decreasing", "lower", "lowering", "reduce", "reducing", "cut", "less"),
    ),
    (
        ("enable", "enabling", "activate", "turn-on"),
        ("disable", "disabling", "deactivate", "turn-off"),
    ),
    (("opt-in",), ("opt-out",)),
    (("import", "importing", "imported"), ("export", "exporting", "exported")),
    (("upload", "uploading", "uploaded"), ("download", "downloading", "downloaded")),
    (("public", "publicly"), ("private", "privately")),
    (
        ("add", "adding", "added", "create", "creating"),
        ("remove", "removing", "delete", "deleting"),
    ),
    (("first", "earliest", "oldest"), ("last", "latest", "newest")),
    (("min", "minimum", "lowest", "least"), ("max", "maximum", "highest", "most")),
    (("inbound", "incoming", "ingress"), ("outbound", "outgoing", "egress")),
    (
        ("approve", "approving", "approved", "accept", "accepted"),
        ("reject", "rejected", "decline", "declined", "deny", "denied"),
    ),
    (("full-time", "fulltime"), ("part-time", "parttime")),
    (("paid",), ("unpaid",)),
    (("before", "prior", "earlier"), ("after", "later")),
    (("login", "log-in", "signin", "sign-in"), ("logout", "log-out", "signout", "sign-out")),
    (("start", "starting", "begin", "resume"), ("stop", "stopping", "end", "pause", "pausing")),
    (("open", "opening", "reopen"), ("close", "closing", "closed")),
    (("buy", "buying", "purchase", "purchasing"), ("sell", "selling", "sold")),
    (("send", "sending", "sent"), ("receive", "receiving", "received")),
    (("debit",), ("credit",)),
    (("income", "revenue"), ("expense", "expenses")),
    (
        ("hire", "hiring", "hired", "onboard", "onboarding"),
        ("fire", "firing", "terminate", "terminating", "offboard", "offboarding"),
    ),
    (("join", "joining"), ("leave", "leaving", "quit")),
    (("above",), ("below", "under")),
    (("early", "earlier"), ("late", "later", "overdue")),
    (("old", "older", "previous"), ("new", "newer", "next")),
    (("internal", "internally"), ("external", "externally")),
    (("domestic",), ("international", "abroad", "overseas")),
    (("lock", "locking", "locked"), ("unlock", "unlocking", "unlocked")),
    (("archive", "archived", "archiving"), ("unarchive", "restore", "restoring")),
    (("encrypt", "encrypted", "encryption"), ("decrypt", "decrypted", "decryption")),
    (("merge", "merging", "merged"), ("split", "splitting")),
    (("push", "pushing"), ("pull", "pulling")),
    (("read", "reading", "readonly", "read-only"), ("write", "writing", "writable")),
    (("sync", "synchronous", "synchronously"), ("async", "asynchronous", "asynchronously")),
    (("ascending", "asc"), ("descending", "desc")),
    (("primary", "main", "master"), ("secondary", "replica", "standby")),
    (("staging", "sandbox", "development"), ("production", "prod", "live")),
    (("frontend", "front-end", "client"), ("backend", "back-end", "server")),
    (("input", "inputs"), ("output", "outputs")),
    (("parent",), ("child", "children")),
    (("upstream",), ("downstream",)),
    (("include", "including", "included"), ("exclude", "excluding", "excluded")),
    (("refund", "refunds", "refunded"), ("charge", "charges", "charged")),
    (("gross",), ("net",)),
    (
        ("employee", "employees", "staff"),
        ("contractor", "contractors", "freelancer", "freelancers"),
    ),
    (("sender",), ("recipient", "receiver")),
    (("source",), ("destination", "target")),
    (("install", "installing"), ("uninstall", "uninstalling")),
    (("subscribe", "subscribing"), ("unsubscribe", "unsubscribing")),
    (
        ("allow", "allowed", "permit", "whitelist", "allowlist"),
        ("block", "blocked", "forbid", "blacklist", "blocklist", "deny"),
    ),
    (
        ("succeed", "succeeded", "success", "successful", "pass", "passing", "passed"),
        ("fail", "failed", "failing", "failure"),
    ),
    (
        ("sick",),
        (
            "parental",
            "maternity",
            "paternity",
            "vacation",
            "holiday",
            "annual",
            "bereavement",
            "unpaid",
        ),
    ),
    (
        ("daily", "day", "days", "per-day"),
        ("weekly", "week", "weeks"),
        ("monthly", "month", "months"),
        ("quarterly", "quarter", "quarters"),
        ("yearly", "annually", "year", "years"),
    ),
    (("morning",), ("afternoon",), ("evening",), ("night",)),
    (("today",), ("tomorrow",), ("yesterday",)),
    (("weekday", "weekdays"), ("weekend", "weekends")),
    (("personal",), ("business", "shared")),
    (
        ("admin", "admins", "administrator", "owner", "owners"),
        ("member", "members", "viewer", "viewers", "guest", "guests"),
    ),
)
CONTRAST_OF: dict[str, tuple[int, int]] = {
    word: (group, member)
    for group, members in enumerate(_CONTRASTS)
    for member, words in enumerate(members)
    for word in words
}

# Words that carry no subject of their own: asking, wanting, greeting, doing in general.
_PHRASING = frozenset(
    """
    a an the and or but so if then than also just really actually basically quick quickly
    simple simply please pls plz kindly thanks thank thx cheers hi hello hey dear team folks
    guys everyone anyone someone somebody support help helping helps assist assistance
    question questions query ask asking wondering wonder curious know knowing tell telling
    explain show showing guide steps step way ways possible able allowed option options how
    what when where which who whom whose why whether can could would should will shall may
    might must do does did doing done is are was were be been being am have has had having
    get getting got go going gonna wanna want wanted wanting need needs needed needing like
    would i me my mine myself we us our ours you your yours it its this that these those
    there here he she they them their one some any all every each of in on at by about with
    via per as into onto up down again anymore still now currently right exactly precisely
    correct correctly proper properly best good way in order please-help urgent asap soon
    trying try tried attempt figure out find finding found see seeing look looking check
    checking let lets let's make making happen happens process procedure instructions
    instruction tutorial change changing changed update updating updated modify modifying
    edit editing set setting reset resetting fix fixing forgot forget forgotten lost lose
    recover recovery use using used work works working handle handling manage managing deal
    dealing okay ok yes well hmm um uh sorry excuse me
    """.split()
)
# Words that name the same thing; each maps to one representative.
_SYNONYM_SETS: tuple[tuple[str, ...], ...] = (
    ("password", "passcode", "pw", "pwd", "passwd"),
    ("account", "profile", "login"),
    ("subscription", "plan", "membership", "tier"),
    ("cancel", "cancellation", "terminate", "end"),
    ("invoice", "bill", "billing", "invoices", "bills"),
    ("refund", "money-back", "reimbursement", "reimburse", "reimbursed"),
    ("card", "credit-card", "payment-method"),
    ("pay", "payment", "paying", "payments", "charge"),
    ("cost", "price", "pricing", "fee", "fees", "much", "expensive", "cheap"),
    ("ship", "shipping", "deliver", "delivery", "send", "post", "mail"),
    ("order", "orders", "purchase", "package", "parcel", "shipment"),
    ("return", "returns", "send-back"),
    ("email", "e-mail", "mail-address"),
    ("delete", "remove", "erase", "close", "get-rid"),
    ("error", "errors", "exception", "failure", "issue", "problem", "bug", "broken", "wrong"),
    ("deploy", "deployment", "release", "ship-it", "rollout"),
    ("database", "db"),
    ("repository", "repo"),
    ("configure", "config", "configuration", "setup", "set-up", "settings"),
    ("leave", "time-off", "pto", "vacation", "holiday", "holidays", "day-off", "days-off"),
    ("salary", "pay", "paycheck", "payslip", "payroll", "wage", "wages", "compensation"),
    ("benefit", "benefits", "perks"),
    ("expense", "expenses", "claim", "claims"),
    ("colleague", "coworker", "co-worker", "teammate", "member"),
    ("invite", "add", "onboard"),
    ("sign-up", "signup", "register", "registration", "create-account"),
    ("log-in", "signin", "sign-in", "login", "access"),
    ("limit", "limits", "quota", "quotas", "cap", "maximum"),
    ("key", "token", "secret", "credential", "credentials"),
    ("doc", "docs", "document", "documentation"),
    ("remote", "home", "wfh"),
    ("boss", "manager", "supervisor", "lead"),
    ("company", "organisation", "organization", "org", "business", "employer"),
    ("job", "role", "position", "opening", "vacancy"),
    ("contact", "reach", "call", "phone"),
    ("long", "duration", "time", "take", "takes"),
    ("receive", "get", "arrive", "arrives"),
)
SYNONYM_OF: dict[str, str] = {word: words[0] for words in _SYNONYM_SETS for word in words}


def _stem(word: str) -> str:
    """A crude suffix strip so 'refunds', 'refunded' and 'refund' compare equal."""
    for suffix in ("'s", "ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


_PHRASES = {
    "turn on": "turn-on",
    "switch on": "turn-on",
    "turn off": "turn-off",
    "switch off": "turn-off",
    "log in": "login",
    "sign in": "signin",
    "log out": "logout",
    "sign out": "signout",
    "opt in": "opt-in",
    "opt out": "opt-out",
    "no longer": "nolonger",
}
_PHRASE = re.compile(r"\b(" + "|".join(re.escape(p) for p in _PHRASES) + r")\b")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens of the normal form; two-word verbs (turn on, log out) are one
    token, number words stay words."""
    plain = normalise(text).replace("n't", "nt").replace("'", "")
    plain = _PHRASE.sub(lambda m: _PHRASES[m.group(1)], plain)
    return _TOKEN.findall(plain)


def _numbers(words: list[str], text: str) -> list[str]:
    """Numbers in order: digits (1,000 = 1000; 2.50 = 2.5) and number words."""
    found: list[str] = []
    for raw in re.findall(r"\d+(?:[.,]\d+)*", normalise(text)):
        plain = raw.replace(",", "")
        found.append(plain.rstrip("0").rstrip(".") if "." in plain else plain)
    for word in words:
        if word in NUMBER_WORDS:
            found.append(NUMBER_WORDS[word])
        elif word in ORDINALS and word != "last":
            found.append(ORDINALS[word])
    return found


def _is_negation(word: str) -> bool:
    return (
        word in NEGATIONS
        or word == "nolonger"
        or (word.endswith("nt") and word[:-2] in _AUXILIARIES)
    )


def _negated(words: list[str]) -> Counter[str]:
    """What each negation negates: the next content word ("doesn't run" -> run)."""
    found: Counter[str] = Counter()
    for index, word in enumerate(words):
        if _is_negation(word):
            following = [w for w in words[index + 1 :] if _is_content(w)]
            found[_canonical(following[0]) if following else ""] += 1
    return found


_AUXILIARIES = frozenset(
    """
    do does did is are was were wo would should could has have had ca must need
    """.split()
)


def _roles(words: list[str]) -> dict[str, set[str]]:
    """Content word -> the roles (from, to, …) it takes in the question."""
    roles: dict[str, set[str]] = {}
    role: str | None = None
    for word in words:
        if word in ROLE_WORDS:
            role = ROLE_WORDS[word]
            continue
        if role is None:
            continue
        if word in _PHRASING and word not in CONTRAST_OF:
            continue  # "to my", "from the": the role passes to the next content word
        roles.setdefault(_canonical(word), set()).add(role)
        role = None
    return roles


def _contrasts(words: list[str]) -> dict[int, list[int]]:
    seen: dict[int, list[int]] = {}
    for word in words:
        hit = CONTRAST_OF.get(word) or CONTRAST_OF.get(_stem(word))
        if hit is not None:
            group, member = hit
            members = seen.setdefault(group, [])
            if not members or members[-1] != member:
                members.append(member)
    return seen


_NAMED = re.compile(
    r"""
    "[^"]{1,80}"                      # quoted text
    | \b[\w.+-]+@[\w-]+\.[\w.-]+\b    # an email address
    | \bhttps?://\S+                  # a URL
    | (?<![\w.])\.?[A-Za-z][\w]*(?:[.+#/][\w+#]*)+   # node.js, c++, c#, .net, a/b
    | \b[A-Za-z]+\d[\w.]*\b           # v2, s3, ec2, py311
    | \b[A-Z]{2,}s?\b                 # API, SSO, EUR, PRs
    | \b[A-Za-z]+_[\w]+\b             # snake_case identifiers
    """,
    re.VERBOSE,
)
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)\s*[\"'(]*$")


def _named(text: str) -> set[str]:
    plain = unicodedata.normalize("NFKC", text).translate(_PLAIN)
    found = {match.group(0).strip('".').casefold() for match in _NAMED.finditer(plain)}
    for match in re.finditer(r"\b[A-Z][a-z][\w'-]*", plain):
        if match.group(0) in {"I", "I'm", "I've", "I'd", "I'll"}:
            continue
        if _SENTENCE_START.search(plain[: match.start()]):
            continue  # a capital that only starts a sentence names nothing
        found.add(match.group(0).casefold())
    return {item for item in found if item and item not in _NAMED_NOISE}


_NAMED_NOISE = frozenset({"hi", "hello", "hey", "thanks", "please", "ok", "okay"})


def _canonical(word: str) -> str:
    return SYNONYM_OF.get(word) or SYNONYM_OF.get(_stem(word)) or _stem(word)


def _is_content(word: str) -> bool:
    return (
        word not in _PHRASING
        and _stem(word) not in _PHRASING
        and not _is_negation(word)
        and word not in ROLE_WORDS
        and word not in NUMBER_WORDS
        and not word[0].isdigit()
    )


def _content(words: list[str]) -> list[str]:
    """Content words in order of first appearance, synonyms folded together."""
    seen: dict[str, None] = {}
    for word in words:
        if _is_content(word):
            seen.setdefault(_canonical(word), None)
    return list(seen)


def _show(items: Iterable[str]) -> str:
    return ", ".join(sorted(items)) or "nothing"


# At most this many content words differ: a small edit, which changes meaning far more often
# than it rephrases; larger rewordings are left to the embedding distance.
SMALL_EDIT = 3


def near_miss(cached: str, new: str) -> str | None:
    """Why the answer to `cached` must not be served for `new`, or None when the guard
    finds no difference in meaning. Symmetric: near_miss(a, b) is None iff near_miss(b, a)
    is None."""
    a, b = tokens(cached), tokens(new)
    numbers_a, numbers_b = _numbers(a, cached), _numbers(b, new)
    if numbers_a != numbers_b:
        shown = " / ".join(", ".join(n) or "none" for n in (numbers_a, numbers_b))
        return f"different numbers ({shown})"
    if _negated(a) != _negated(b):
        return "negated differently"
    roles_a, roles_b = _roles(a), _roles(b)
    for word in roles_a.keys() & roles_b.keys():
        if roles_a[word] != roles_b[word]:
            return f"'{word}' plays a different role (swapped)"
    contrasts_a, contrasts_b = _contrasts(a), _contrasts(b)
    for group in contrasts_a.keys() & contrasts_b.keys():
        if contrasts_a[group] != contrasts_b[group]:
            return (
                "contrasting words ("
                + " / ".join(_group_words(group, c) for c in (contrasts_a, contrasts_b))
                + ")"
            )
    named_a, named_b = _named(cached), _named(new)
    if named_a != named_b:
        return f"different names ({_show(named_a - named_b)} / {_show(named_b - named_a)})"
    content_a, content_b = _content(a), _content(b)
    shared = set(content_a) & set(content_b)
    order_a = [w for w in content_a if w in shared]
    order_b = [w for w in content_b if w in shared]
    if order_a != order_b:
        return "the same words in another order (swapped roles)"
    only_a, only_b = set(content_a) - shared, set(content_b) - shared
    if 0 < len(only_a) + len(only_b) <= SMALL_EDIT:
        return f"a small edit ({_show(only_a)} / {_show(only_b)})"
    return None


def _group_words(group: int, found: dict[int, list[int]]) -> str:
    members = found.get(group, [])
    return ", ".join(_CONTRASTS[group][m][0] for m in members) or "neither"
