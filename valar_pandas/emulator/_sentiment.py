"""A small hand-written lexicon scorer that reads English product reviews.

It owns only :func:`classify_sentiment`: tokens are scored from a lexicon of words and short
phrases, with negation ("not good", "wouldn't recommend"), intensifiers ("really love") and
contrast ("…, but …") handled lightly. Weak or mixed evidence reads as neutral.
"""

from __future__ import annotations

import re

__all__ = ["classify_sentiment"]

_POSITIVE: dict[str, float] = {
    "love": 2.0, "loved": 2.0, "loves": 2.0, "adore": 2.0, "excellent": 2.0, "amazing": 2.0,
    "awesome": 2.0, "fantastic": 2.0, "perfect": 2.0, "wonderful": 2.0, "superb": 2.0,
    "brilliant": 2.0, "flawless": 2.0, "outstanding": 2.0, "delighted": 2.0, "thrilled": 2.0,
    "terrific": 2.0, "incredible": 2.0, "stellar": 2.0, "great": 1.5, "perfectly": 1.5,
    "best": 1.5, "happy": 1.5, "pleased": 1.5, "recommend": 1.5, "recommended": 1.5,
    "reliable": 1.5, "beautiful": 1.5, "impressed": 1.5, "impressive": 1.5, "favorite": 1.5,
    "favourite": 1.5, "lovely": 1.5, "exceeded": 1.5, "gorgeous": 1.5, "satisfied": 1.2,
    "enjoy": 1.2, "enjoyed": 1.2, "breeze": 1.2, "good": 1.0, "nice": 1.0, "sturdy": 1.0,
    "solid": 1.0, "comfortable": 1.0, "worth": 1.0, "glad": 1.0, "convenient": 1.0,
    "helpful": 1.0, "smooth": 1.0, "durable": 1.0, "bargain": 1.0, "liked": 1.0, "better": 1.0,
    "punchy": 1.0, "survived": 1.0, "easy": 0.8, "fast": 0.8, "quick": 0.8, "crisp": 0.8,
    "likes": 0.8, "snugly": 0.8, "bright": 0.8, "clear": 0.8, "neat": 0.8, "tough": 0.8,
    "handy": 0.8, "well": 0.5, "value": 0.5, "early": 0.5, "fair": 0.5, "decent": 0.4,
    "works": 0.3, "worked": 0.3, "okay": 0.3, "ok": 0.3, "fine": 0.3, "work": 0.3,
    "working": 0.3,
}  # fmt: skip

_NEGATIVE: dict[str, float] = {
    "hate": 2.0, "hated": 2.0, "terrible": 2.0, "awful": 2.0, "horrible": 2.0, "worst": 2.0,
    "defective": 2.0, "useless": 2.0, "unusable": 2.0, "junk": 2.0, "garbage": 2.0,
    "waste": 2.0, "scam": 2.0, "disappointed": 1.8, "disappointing": 1.8,
    "disappointment": 1.8, "faulty": 1.8, "bad": 1.5, "poor": 1.5, "poorly": 1.5,
    "broke": 1.5, "broken": 1.5, "died": 1.5, "fails": 1.5, "failed": 1.5, "failure": 1.5,
    "frustrating": 1.5, "frustrated": 1.5, "overpriced": 1.5, "unreliable": 1.5, "regret": 1.5,
    "avoid": 1.5, "damaged": 1.5, "rude": 1.5, "worse": 1.5, "rusting": 1.5, "rusted": 1.5,
    "dead": 1.2, "breaks": 1.2, "refund": 1.2, "returned": 1.2, "returning": 1.2,
    "flimsy": 1.2, "annoying": 1.2, "leak": 1.2, "leaks": 1.2, "leaked": 1.2, "cracked": 1.2,
    "uncomfortable": 1.2, "peeling": 1.2, "flaking": 1.2, "chemical": 1.2, "chemicals": 1.2,
    "ripped": 1.2, "hurt": 1.2, "hurts": 1.2, "disconnecting": 1.2, "confusing": 1.2,
    "burnt": 1.2, "problem": 1.0, "problems": 1.0, "slow": 1.0, "mediocre": 1.0, "wrong": 1.0,
    "stopped": 1.0, "tinny": 1.0, "typos": 1.0, "ugh": 1.0, "scratched": 1.0, "cheap": 0.8,
    "issue": 0.8, "issues": 0.8, "noisy": 0.8, "unfortunately": 0.8, "sadly": 0.8,
    "lacks": 0.8, "missing": 0.8, "dented": 0.8, "slower": 0.8, "sticky": 0.8, "dull": 0.8,
    "scratches": 0.8, "meh": 0.6, "late": 0.6, "too": 0.6, "loud": 0.5, "smaller": 0.5,
    "impossible": 1.2, "flickers": 1.2, "greasy": 1.0, "wobbles": 1.0, "heavier": 0.5,
}  # fmt: skip

_PHRASES: dict[tuple[str, ...], float] = {
    ("stopped", "working"): -2.0, ("never", "worked"): -2.0, ("doesn't", "work"): -2.0,
    ("didn't", "work"): -2.0, ("does", "not", "work"): -2.0, ("did", "not", "work"): -2.0,
    ("don't", "work"): -2.0, ("won't", "work"): -2.0, ("not", "working"): -2.0,
    ("no", "longer", "works"): -2.0, ("fell", "apart"): -2.0, ("waste", "of", "money"): -2.5,
    ("waste", "of", "time"): -2.5, ("don't", "buy"): -2.0, ("do", "not", "buy"): -2.0,
    ("stay", "away"): -2.0, ("one", "star"): -2.0, ("1", "star"): -2.0, ("zero", "stars"): -2.0,
    ("save", "your", "money"): -2.0, ("never", "got", "back"): -1.5, ("gave", "up"): -1.5,
    ("not", "worth"): -1.5, ("way", "too"): -1.0, ("five", "stars"): 2.0, ("5", "stars"): 2.0,
    ("worth", "every", "penny"): 2.0, ("highly", "recommend"): 2.5, ("can't", "beat"): 2.0,
    ("cannot", "beat"): 2.0, ("couldn't", "put", "it", "down"): 2.0, ("won", "me", "over"): 1.5,
    ("buy", "again"): 1.5, ("no", "complaints"): 1.5, ("no", "problems"): 1.2,
    ("no", "issues"): 1.2, ("well", "made"): 1.2, ("without", "a", "scratch"): 1.2,
    ("does", "what", "it", "says"): 0.5, ("on", "time"): 0.5, ("as", "expected"): 0.3,
    ("as", "described"): 0.3, ("not", "sure"): 0.0, ("exactly", "what"): 1.0,
    ("going", "back"): -1.0,
}  # fmt: skip


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _phrases(text: str) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(phrase.split()) for phrase in text.split("|"))


#: Phrases that hedge: each one pulls the verdict toward neutral.
_HEDGES = _phrases(
    "mixed feelings|middle of the road|nothing fancy|nothing special|i guess|it's okay|"
    "does the job|not a steal|it'll do|for now|just okay|about what you'd expect|"
    "not great|it's fine|can't really complain|not bad|pretty average|it's alright"
)
_LONGEST_PHRASE = max(len(p) for p in (*_PHRASES, *_HEDGES))
_NEGATORS = _words(
    "not no never nothing none nobody neither nor without hardly barely cannot cant dont doesnt "
    "didnt isnt wasnt wont wouldnt couldnt shouldnt arent werent"
)
_INTENSIFIERS = _words(
    "very really extremely absolutely so super totally incredibly highly truly completely "
    "utterly insanely seriously"
)
_DIMINISHERS = _words("somewhat slightly kinda kind sort fairly mostly rather bit")
_NOT_LIKING = _words("looks look looked feels feel felt seems seem sounds would just")
_CONTRAST = frozenset(("but", "however", "although", "though"))
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.!?;,]")

_NEGATION_SCOPE = 3
_THRESHOLD = 0.75


def _tokens(text: str) -> list[str]:
    lowered = text.lower().replace("\u2019", "'").replace("that said", "but")
    return _TOKEN.findall(lowered)


def _is_negator(token: str) -> bool:
    return token in _NEGATORS or token.endswith("n't")


def classify_sentiment(text: str) -> str:
    """Classify a piece of English text as ``positive``, ``negative`` or ``neutral``.

    Args:
        text: The text to read, typically one product review.

    Returns:
        One lowercase label: ``"positive"``, ``"negative"`` or ``"neutral"``.
    """
    tokens = _tokens(text)
    positive = negative = 0.0
    negated = 0  # tokens left in the current negation scope
    emphasis = 1.0
    hedges = 0
    i = 0
    while i < len(tokens):
        token = tokens[i]
        score: float | None = None
        step = 1
        for size in range(min(_LONGEST_PHRASE, len(tokens) - i), 1, -1):
            phrase = tuple(tokens[i : i + size])
            if phrase in _PHRASES:
                score, step = _PHRASES[phrase], size
                break
            if phrase in _HEDGES:
                hedges, step = hedges + 1, size
                break
        if score is None and step == 1:
            if token in ".!?;,":
                negated, emphasis = 0, 1.0
            elif token in _CONTRAST:
                positive, negative = positive * 0.6, negative * 0.6
                negated, emphasis = 0, 1.0
            elif _is_negator(token):
                negated = _NEGATION_SCOPE + 1
            elif token in _INTENSIFIERS:
                emphasis = 1.5
            elif token in _DIMINISHERS:
                emphasis = 0.5
            elif token == "like":
                score = 0.0 if i and tokens[i - 1] in _NOT_LIKING else 1.0
            elif token in _POSITIVE:
                score = _POSITIVE[token]
            elif token in _NEGATIVE:
                score = -_NEGATIVE[token]
        if score is not None:
            score *= emphasis
            if negated and score > 0:
                score = -score
            elif negated and score < 0:
                score = -0.4 * score
            if score > 0:
                positive += score
            else:
                negative -= score
            emphasis = 1.0
        negated = max(0, negated - step)
        i += step
    if (
        positive >= 1.0
        and negative >= 1.0
        and max(positive, negative) <= 1.5 * min(positive, negative)
    ):
        return "neutral"
    net = (positive - negative) / (1.0 + 0.75 * hedges)
    if net >= _THRESHOLD:
        return "positive"
    if net <= -_THRESHOLD:
        return "negative"
    return "neutral"
