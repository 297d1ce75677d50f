"""The language of ShapeRef: lexicon, expression generator and symbolic resolver.

A referring expression is read as a ``Query``: a head noun phrase (category plus optional
colour and size), at most one location ("on the left") or ordinal ("the second ... from the
top") clause, and any number of relations to landmarks ("below the red ring"), each landmark
being an appearance-only noun phrase. ``parse_expression`` turns text of every style, synonyms
included, into a ``Query``; ``evaluate`` finds the object a ``Query`` picks; ``resolve`` does
both. The generator (``describe``) proposes queries, keeps one that ``evaluate`` maps to the
referent, realises it as text, and certifies the *text* with ``resolve``.

Geometry (all in fractions of the image side, centres of the full silhouettes, y downwards):

- "clearly" means by at least ``MARGIN``; anything closer is *borderline*.
- Location ``left`` picks, among the objects that fit the head noun phrase, the one with the
  smallest x, and only if every other such object is at least ``MARGIN`` further right
  (``right``/``top``/``bottom`` alike; ``middle``: nearest to the image centre).
- Ordinal ``(k, "left")`` sorts the same objects by x and picks the k-th, again with a clear
  ``MARGIN`` to both neighbours.
- Relation "A above B": B's noun phrase must pick exactly one object; then A's centre must be
  at least ``MARGIN`` higher than B's (``below``, ``left_of``, ``right_of`` alike). A is
  clearly *not* above B when it is less than ``MARGIN / 2`` higher; in between is borderline.
  ``near``: the gap between the two bounding circles is at most ``NEAR_DISTANCE - MARGIN``
  (clearly not near beyond ``NEAR_DISTANCE - MARGIN / 2``).
- An expression resolves to an object when that object satisfies every clause clearly and
  every other object fails some clause clearly; otherwise (none, several, or borderline
  cases) ``resolve`` returns ``None``. This is the oracle of the benchmark.

The three styles mirror the real datasets (notebook 00): ``refshape`` = RefCOCO (short,
location words allowed), ``refshape+`` = RefCOCO+ (appearance only), ``refshape-g`` = G-Ref
(longer, relational, synonyms, non-minimal).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from refseg_lib.data.scene import Scene, ShapeObject
from refseg_lib.data.text import MAX_LENGTH, tokenize
from refseg_lib.data.types import PHENOMENA

#: testA referents (like RefCOCO testA = people): round silhouettes.
GROUP_A = ("circle", "ring", "heart", "crescent")
#: testB referents (like RefCOCO testB = other objects): angular silhouettes.
GROUP_B = ("triangle", "star", "cross", "diamond")
CATEGORIES = GROUP_A + GROUP_B
COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "big")
#: RefCOCO-like, RefCOCO+-like (appearance only) and G-Ref-like (long, relational) expressions.
STYLES = ("refshape", "refshape+", "refshape-g")
LOCATIONS = ("left", "right", "top", "bottom", "middle")
DIRECTIONS = ("left", "right", "top", "bottom")  # of ordinals: "second from the left"
RELATIONS = ("above", "below", "left_of", "right_of", "near")

MARGIN = 0.08  # what "clearly" means, fraction of the image side
NEAR_DISTANCE = 0.14  # "near": gap between bounding circles below NEAR_DISTANCE - MARGIN

# Words of each meaning; the first one is canonical (RefCOCO-like styles use it).
CATEGORY_WORDS = MappingProxyType({
    "circle": ("circle", "disc", "disk", "dot"),
    "ring": ("ring", "donut", "doughnut", "hoop"),
    "heart": ("heart", "valentine"),
    "crescent": ("crescent", "moon", "sickle"),
    "triangle": ("triangle", "wedge"),
    "star": ("star", "pentagram"),
    "cross": ("cross", "plus"),
    "diamond": ("diamond", "rhombus", "lozenge"),
})
COLOR_WORDS = MappingProxyType({
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald", "lime"),
    "blue": ("blue", "azure", "cobalt"),
    "yellow": ("yellow", "golden", "lemon"),
    "purple": ("purple", "violet", "plum"),
    "orange": ("orange", "amber", "tangerine"),
})
SIZE_WORDS = MappingProxyType({
    "small": ("small", "little", "tiny"),
    "big": ("big", "large", "huge"),
})
LOCATION_WORDS = MappingProxyType({
    "left": ("left", "leftmost"),
    "right": ("right", "rightmost"),
    "top": ("top", "topmost", "highest", "uppermost"),
    "bottom": ("bottom", "bottommost", "lowest", "lowermost"),
    "middle": ("middle", "center", "centre", "central"),
})
ORDINAL_WORDS = MappingProxyType({"first": 1, "second": 2, "third": 3})
RELATION_PHRASES = MappingProxyType({
    "above": ("above", "over", "higher than"),
    "below": ("below", "under", "beneath", "underneath", "lower than"),
    "left_of": ("left of", "to the left of", "on the left side of"),
    "right_of": ("right of", "to the right of", "on the right side of"),
    "near": ("next to", "beside", "near", "close to"),
})
_FUNCTION_WORDS = frozenset({"to", "the", "on", "of", "than", "from", "at", "in", "a"})
# Spatial words that the parser treats as filler but that no appearance-only style may use.
_OTHER_SPATIAL_WORDS = frozenset({
    "far", "furthest", "farthest", "very", "up", "down", "upper", "side", "corner", "last",
    "nearest", "closest", "between", "behind", "front", "next", "close", "counting",
    "horizontal", "vertical", "most", "edge", "position",
})
#: Every location, ordinal or relational word any style may emit (synonyms included), and some
#: more; no ``refshape+`` expression contains one.
LOCATION_AND_ORDINAL_WORDS = frozenset(
    {w for words in LOCATION_WORDS.values() for w in words}
    | set(ORDINAL_WORDS) | set(DIRECTIONS)
    | {w for phrases in RELATION_PHRASES.values() for p in phrases for w in p.split()}
) - _FUNCTION_WORDS | _OTHER_SPATIAL_WORDS

TRUE, BORDERLINE, FALSE = 2, 1, 0  # three-valued truth; a conjunction is the minimum


class Draws:
    """Uniform numbers from a numpy ``Generator``, fetched a block at a time.

    A numpy call costs about a microsecond whatever its size, so the many small choices of
    scene sampling and expression generation read from a buffer. Only ``+``, ``*`` and
    comparisons act on the numbers, so every choice is the same on every machine.
    """

    def __init__(self, rng: np.random.Generator, block: int = 64):
        self._rng, self._block, self._buffer = rng, block, []

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        if not self._buffer:
            self._buffer = self._rng.random(self._block).tolist()
        return low + (high - low) * self._buffer.pop()

    def below(self, n: int) -> int:
        """An integer in ``[0, n)``."""
        k = int(self.uniform() * n)
        return k if k < n else n - 1

    def pick(self, options: Sequence):
        return options[self.below(len(options))]

    def shuffled(self, items: Sequence) -> list:
        keys = [self.uniform() for _ in items]
        return [items[k] for k in sorted(range(len(items)), key=keys.__getitem__)]

    def weighted_order(self, weights: Mapping[str, float]) -> list[str]:
        """All keys, drawn one by one without replacement, each with probability ~ weight."""
        keys, order = list(weights), []
        while keys:
            u, k = self.uniform() * sum(weights[key] for key in keys), 0
            while k < len(keys) - 1 and u >= weights[keys[k]]:
                u, k = u - weights[keys[k]], k + 1
            order.append(keys.pop(k))
        return order


@dataclass(frozen=True)
class NounPhrase:
    """Category with optional colour and size: what RefCOCO+ allows."""

    category: str
    color: str | None = None
    size: str | None = None


@dataclass(frozen=True)
class Query:
    """Head noun phrase + optional location / ordinal clause + relations to landmarks."""

    head: NounPhrase
    location: str | None = None  # one of LOCATIONS
    ordinal: tuple[int, str] | None = None  # (k, one of DIRECTIONS)
    relations: tuple[tuple[str, NounPhrase], ...] = ()  # (one of RELATIONS, landmark)

    @property
    def tags(self) -> tuple[str, ...]:
        """Phenomena used, in ``PHENOMENA`` order (colour -> attribute, small/big -> size)."""
        phrases = (self.head, *(landmark for _, landmark in self.relations))
        used = {
            "category": True,
            "attribute": any(p.color for p in phrases),
            "size": any(p.size for p in phrases),
            "location": self.location is not None,
            "ordinal": self.ordinal is not None,
            "relation": bool(self.relations),
        }
        return tuple(p for p in PHENOMENA if used[p])


# ----------------------------------------------------------------------------- parsing

def _build_lexicon() -> MappingProxyType:
    """Word or phrase (a tuple of words) -> (kind, meaning)."""
    lexicon: dict[tuple[str, ...], tuple[str, object]] = {}
    for kind, table in (("category", CATEGORY_WORDS), ("color", COLOR_WORDS),
                        ("size", SIZE_WORDS), ("location", LOCATION_WORDS)):
        for meaning, synonyms in table.items():
            lexicon.update({(w,): (kind, meaning) for w in synonyms})
    lexicon.update({(w,): ("ordinal", k) for w, k in ORDINAL_WORDS.items()})
    for relation, synonyms in RELATION_PHRASES.items():
        for phrase in synonyms:  # keep only the contentful tail: "to the left of" -> "left of"
            words = tuple(t for t in phrase.split() if t not in ("to", "the", "on"))
            lexicon[words] = ("relation", relation)
    for direction in DIRECTIONS:
        lexicon[("from", "the", direction)] = lexicon[("from", direction)] = (
            "direction", direction)
    return MappingProxyType(lexicon)


_LEXICON = _build_lexicon()
_LONGEST_PHRASE = max(len(p) for p in _LEXICON)
_PHRASE_STARTS = frozenset(p[0] for p in _LEXICON if len(p) > 1)


def tokenize_letters(text: str) -> list[str]:
    """Lower-case runs of letters: ``"left-most"`` -> ``["left", "most"]``."""
    return re.findall(r"[a-z]+", text.lower())


def _noun_phrase(items: list[tuple[str, object]], text: str) -> NounPhrase:
    found: dict[str, list] = {"category": [], "color": [], "size": []}
    for kind, value in items:
        if kind in found:
            found[kind].append(value)
    if len(found["category"]) != 1 or len(found["color"]) > 1 or len(found["size"]) > 1:
        raise ValueError(f"cannot read one noun phrase (category, colour?, size?) in {text!r}")
    return NounPhrase(found["category"][0], *(v[0] if v else None for v in
                                              (found["color"], found["size"])))


def parse_expression(text: str) -> Query:
    """Read an expression of any style into a ``Query``; ``ValueError`` if it is not one.

    Multi-word phrases ("left of", "from the top", "next to") are matched longest first, so
    "to the left of the ring" is a relation while "on the left" is a location. Words outside
    the lexicon ("the", "that", "sits") are fillers.

    >>> parse_expression("the second small star from the left").ordinal
    (2, 'left')
    """
    tokens = tokenize_letters(text)
    segments: list[tuple[str | None, list]] = [(None, [])]  # (relation, items) per clause
    i = 0
    while i < len(tokens):
        n = _LONGEST_PHRASE if tokens[i] in _PHRASE_STARTS else 1  # longest match first
        while n > 1 and tuple(tokens[i:i + n]) not in _LEXICON:
            n -= 1
        item = _LEXICON.get(tuple(tokens[i:i + n]))
        if item is not None and item[0] == "relation":
            segments.append((item[1], []))
        elif item is not None:
            segments[-1][1].append(item)
        i += n
    head_items = segments[0][1]
    location = [v for k, v in head_items if k == "location"]
    ordinal = [v for k, v in head_items if k == "ordinal"]
    direction = [v for k, v in head_items if k == "direction"]
    if len(location) > 1 or len(ordinal) > 1 or len(ordinal) != len(direction) or (
            location and ordinal):
        raise ValueError(f"need at most one location or one 'k-th from the <side>' in {text!r}")
    relations = []
    for relation, items in segments[1:]:
        if any(k in ("location", "ordinal", "direction") for k, _ in items):
            raise ValueError(f"a landmark is described by appearance only, in {text!r}")
        relations.append((relation, _noun_phrase(items, text)))
    return Query(_noun_phrase(head_items, text), location[0] if location else None,
                 (ordinal[0], direction[0]) if ordinal else None, tuple(relations))


def expression_tags(text: str) -> tuple[str, ...]:
    """Phenomenon tags of an expression, read by the parser (see ``Query.tags``)."""
    return parse_expression(text).tags


# --------------------------------------------------------------------------- semantics

def _fitting(objects: Sequence[ShapeObject], phrase: NounPhrase) -> list[int]:
    """Indices of the objects that ``phrase`` describes (appearance only)."""
    category, color, size = phrase.category, phrase.color, phrase.size
    return [i for i, o in enumerate(objects) if o.category == category
            and (color is None or o.color == color) and (size is None or o.size == size)]


def _rank_truth(values: dict[int, float], rank: int) -> dict[int, int]:
    """Truth of "is the ``rank``-th smallest value", needing a clear MARGIN to its rivals."""
    order = sorted(values, key=values.__getitem__)
    if rank > len(order):
        return dict.fromkeys(order, FALSE)
    target = order[rank - 1]
    rivals = {i for i in order if i != target and abs(values[i] - values[target]) < MARGIN}
    if not rivals:
        return {i: TRUE if i == target else FALSE for i in order}
    return {i: BORDERLINE if i == target or i in rivals else FALSE for i in order}


def _key(obj: ShapeObject, where: str) -> float:
    """Smaller = further towards ``where``."""
    if where == "middle":
        return math.sqrt((obj.x - 0.5) ** 2 + (obj.y - 0.5) ** 2)
    return {"left": obj.x, "right": -obj.x, "top": obj.y, "bottom": -obj.y}[where]


def relation_score(a: ShapeObject, b: ShapeObject, relation: str) -> float:
    """How much "a <relation> b" holds: > 0 means it does, in fractions of the image side."""
    if relation == "near":
        gap = math.sqrt((a.x - b.x) ** 2 + (a.y - b.y) ** 2) - a.radius - b.radius
        return NEAR_DISTANCE - gap
    return {"above": b.y - a.y, "below": a.y - b.y,
            "left_of": b.x - a.x, "right_of": a.x - b.x}[relation]


def _truth(score: float) -> int:
    return TRUE if score >= MARGIN else FALSE if score < MARGIN / 2 else BORDERLINE


def evaluate(objects: Sequence[ShapeObject], query: Query) -> int | None:
    """Index of the one object that ``query`` clearly picks, else ``None`` (module docstring)."""
    fitting = _fitting(objects, query.head)
    if not (query.location or query.ordinal or query.relations):  # appearance only
        return fitting[0] if len(fitting) == 1 else None
    truth = dict.fromkeys(fitting, TRUE)
    if query.location or query.ordinal:
        where, rank = (query.location, 1) if query.location else query.ordinal[::-1]
        ranked = _rank_truth({i: _key(objects[i], where) for i in truth}, rank)
        truth = {i: min(t, ranked[i]) for i, t in truth.items()}
    for relation, phrase in query.relations:
        landmarks = _fitting(objects, phrase)
        if len(landmarks) != 1:
            return None
        landmark = landmarks[0]
        truth.pop(landmark, None)
        for i in truth:
            truth[i] = min(truth[i], _truth(relation_score(objects[i], objects[landmark],
                                                           relation)))
    chosen = [i for i, t in truth.items() if t == TRUE]
    if len(chosen) == 1 and all(t == FALSE for i, t in truth.items() if i != chosen[0]):
        return chosen[0]
    return None


def resolve(scene: Scene, expression: str) -> int | None:
    """The symbolic oracle: index of the object ``expression`` refers to in ``scene``.

    ``None`` when the expression cannot be parsed, matches nothing, or matches several objects
    (borderline geometry counts as a possible match). Any style and synonym is understood.
    """
    try:
        query = parse_expression(expression)
    except ValueError:
        return None
    return evaluate(scene.objects, query)


# -------------------------------------------------------------------------- generation

_ATTRIBUTE_SETS = ((), ("color",), ("size",), ("color", "size"))
# Probability of each kind of description (RefCOCO: about half use location words; G-Ref
# sentences are mostly relational; RefCOCO+ forbids location).
_KIND_WEIGHTS = MappingProxyType({style: MappingProxyType(weights) for style, weights in {
    "refshape": {"appearance": 0.3, "location": 0.3, "ordinal": 0.15, "relation": 0.25},
    "refshape+": {"appearance": 1.0},
    "refshape-g": {"appearance": 0.15, "location": 0.15, "ordinal": 0.1, "relation": 0.6},
}.items()})


def _phrase(obj: ShapeObject, attributes: Sequence[str]) -> NounPhrase:
    return NounPhrase(obj.category, obj.color if "color" in attributes else None,
                      obj.size if "size" in attributes else None)


def _heads(obj: ShapeObject, style: str, draws: Draws) -> list[NounPhrase]:
    """Head phrases to try: fewest attributes first (G-Ref: most first; sometimes random)."""
    order = draws.shuffled(range(len(_ATTRIBUTE_SETS)))
    if draws.uniform() < 0.75:
        sign = -1 if style == "refshape-g" else 1
        order.sort(key=lambda k: sign * len(_ATTRIBUTE_SETS[k]))
    return [_phrase(obj, _ATTRIBUTE_SETS[k]) for k in order]


def _landmark_phrase(objects: Sequence[ShapeObject], j: int, style: str,
                     draws: Draws) -> NounPhrase | None:
    """Shortest appearance description of object ``j`` (G-Ref: sometimes fuller)."""
    for attributes in _ATTRIBUTE_SETS:
        phrase = _phrase(objects[j], attributes)
        if evaluate(objects, Query(phrase)) == j:
            if style == "refshape-g" and draws.uniform() < 0.5:
                phrase = _phrase(objects[j], ("color", "size"))
            return phrase
    return None


def _candidates(objects: Sequence[ShapeObject], r: int, style: str,
                draws: Draws) -> Iterator[Query]:
    """Queries worth trying for referent ``r``, lazily, in the style's order of preference."""
    for kind in draws.weighted_order(_KIND_WEIGHTS[style]):
        for head in _heads(objects[r], style, draws):
            fitting = _fitting(objects, head)
            if kind == "appearance":
                yield Query(head)
            elif kind == "location" and len(fitting) > 1:  # never "the left star" of one star
                for where in draws.shuffled(LOCATIONS):
                    if min(fitting, key=lambda i: _key(objects[i], where)) == r:
                        yield Query(head, location=where)
            elif kind == "ordinal" and len(fitting) > 1:  # "second"/"third" before "first"
                ranks = {d: sorted(fitting, key=lambda i: _key(objects[i], d)).index(r) + 1
                         for d in draws.shuffled(DIRECTIONS)}
                for direction, k in sorted(ranks.items(), key=lambda dk: dk[1] == 1):
                    if k <= len(ORDINAL_WORDS):
                        yield Query(head, ordinal=(k, direction))
            elif kind == "relation":
                for j in draws.shuffled(range(len(objects))):
                    landmark = _landmark_phrase(objects, j, style, draws) if j != r else None
                    for relation in draws.shuffled(RELATIONS) if landmark else ():
                        if _truth(relation_score(objects[r], objects[j], relation)) == TRUE:
                            yield Query(head, relations=((relation, landmark),))


def _say_phrase(phrase: NounPhrase, style: str, draws: Draws) -> str:
    """"small red star"; G-Ref style draws synonyms ("tiny crimson pentagram")."""
    def word(table: MappingProxyType, meaning: str) -> str:
        synonyms = table[meaning]
        if style == "refshape-g":
            return draws.pick(synonyms)
        return draws.pick(synonyms[:2]) if table is SIZE_WORDS else synonyms[0]
    words = [word(SIZE_WORDS, phrase.size) if phrase.size else "",
             word(COLOR_WORDS, phrase.color) if phrase.color else "",
             word(CATEGORY_WORDS, phrase.category)]
    return " ".join(w for w in words if w)


_ON_THE = MappingProxyType({"left": "on the left", "right": "on the right", "top": "at the top",
                            "bottom": "at the bottom", "middle": "in the middle"})
_ON_THE_FAR = MappingProxyType({
    "left": "on the far left", "right": "on the far right", "top": "at the very top",
    "bottom": "at the very bottom", "middle": "in the middle of the image"})


def _say(query: Query, style: str, draws: Draws) -> str:
    """Realise ``query`` as text in ``style`` (terse for RefCOCO-like, wordy for G-Ref-like)."""
    noun, g = _say_phrase(query.head, style, draws), style == "refshape-g"
    if query.location:
        where = query.location
        most = LOCATION_WORDS[where][1]
        if g:
            return draws.pick((f"the {noun} {_ON_THE_FAR[where]}", f"the {most} {noun}",
                               f"the {noun} which is the {most} one"))
        return draws.pick((f"{noun} {_ON_THE[where]}", f"the {noun} {_ON_THE[where]}",
                           f"{where} {noun}", f"{draws.pick(LOCATION_WORDS[where])} {noun}"))
    if query.ordinal:
        k, side = query.ordinal
        nth = next(word for word, rank in ORDINAL_WORDS.items() if rank == k)
        if g:
            return draws.pick((f"the {noun} that is {nth} from the {side}",
                               f"the {nth} {noun} counting from the {side}"))
        return draws.pick((f"{nth} {noun} from {side}", f"the {nth} {noun} from the {side}"))
    if query.relations:
        clauses = [f"{draws.pick(RELATION_PHRASES[relation][:None if g else 2])} the "
                   f"{_say_phrase(landmark, style, draws)}"
                   for relation, landmark in query.relations]
        if g:
            verb = draws.pick(("that sits", "which is", "located", "placed", "that is"))
            return f"{draws.pick(('the', 'a'))} {noun} {verb} " + " and ".join(clauses)
        return f"{draws.pick(('the ', ''))}{noun} " + " and ".join(clauses)
    if g:
        return draws.pick((f"the {noun}", f"a {noun} in the picture", f"the {noun} shape",
                           f"the {noun} that you can see in this image"))
    *attributes, category = noun.split()
    if attributes and style == "refshape+" and draws.uniform() < 0.25:
        return f"the {category} that is {' and '.join(attributes)}"
    return draws.pick((noun, f"the {noun}"))


def _second_relation(objects: Sequence[ShapeObject], r: int, query: Query,
                     draws: Draws) -> Query:
    """G-Ref style: append a second true relation ("... and left of the green cross")."""
    taken = {evaluate(objects, Query(landmark)) for _, landmark in query.relations}
    for j in draws.shuffled(range(len(objects))):
        landmark = _landmark_phrase(objects, j, "refshape-g", draws) if (
            j != r and j not in taken) else None
        for relation in draws.shuffled(RELATIONS) if landmark else ():
            if _truth(relation_score(objects[r], objects[j], relation)) == TRUE:
                return Query(query.head, relations=(*query.relations, (relation, landmark)))
    return query


def describe(scene: Scene, style: str, rng: np.random.Generator | Draws
             ) -> tuple[str, tuple[str, ...]]:
    """A certified expression for ``scene.referent`` in ``style`` and its phenomenon tags.

    Candidate queries are tried in a random, style-dependent order; the first one that
    ``evaluate`` maps to the referent is realised as text, and the text is kept only if it
    fits in ``MAX_LENGTH["shapes"]`` tokens and ``resolve`` maps it back to the referent.
    ``ValueError`` if no description exists (for ``refshape+``: the referent's appearance is
    not unique in the scene; ``sample_scene`` never draws such a scene).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid styles: {STYLES}")
    draws = rng if isinstance(rng, Draws) else Draws(rng)
    objects, r = scene.objects, scene.referent
    for query in _candidates(objects, r, style, draws):
        if evaluate(objects, query) != r:
            continue
        if style == "refshape-g" and query.relations and draws.uniform() < 0.3:
            longer = _second_relation(objects, r, query, draws)
            query = longer if evaluate(objects, longer) == r else query
        text = _say(query, style, draws)
        if len(tokenize(text)) <= MAX_LENGTH["shapes"] and resolve(scene, text) == r:
            return text, query.tags
    raise ValueError(f"object {r} of this scene cannot be described unambiguously in {style!r}")
