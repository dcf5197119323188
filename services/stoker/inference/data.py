"""Generated, labelled training data for the two heads. Pure and seeded: the same seed
always yields the same examples, so a head's held-out metrics can be recomputed later
from the seed stored in its metadata.

* Queries: templates filled from small vocabularies, one set per intent.
* Product pairs: a base product record, then either a paraphrase of it (duplicate),
  the same product with one attribute changed - colour, size or pack count - (not a
  duplicate: customers see a different variant), or another product (not a duplicate).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

T = TypeVar("T")

INTENTS: tuple[str, ...] = (
    "product_search",
    "media",
    "help_support",
    "navigation",
    "order_tracking",
    "account",
)

_PRODUCTS = (
    "running shoes",
    "wireless earbuds",
    "coffee maker",
    "yoga mat",
    "laptop stand",
    "winter jacket",
    "water bottle",
    "desk lamp",
    "office chair",
    "phone case",
    "backpack",
    "electric toothbrush",
    "air fryer",
    "hiking boots",
    "bluetooth speaker",
    "gaming mouse",
    "mechanical keyboard",
    "baby stroller",
    "dog food",
    "sunscreen",
    "usb c cable",
    "rain boots",
    "blender",
    "throw pillow",
    "bath towels",
)
_QUALIFIERS = (
    "cheap",
    "best",
    "waterproof",
    "organic",
    "kids",
    "mens",
    "womens",
    "large",
    "small",
    "lightweight",
    "stainless steel",
    "leather",
    "under 50 dollars",
    "on sale",
    "red",
    "black",
)
_MEDIA_KINDS = ("song", "album", "movie", "podcast", "audiobook", "tv show", "playlist")
_MEDIA_VERBS = ("play", "stream", "watch", "listen to", "put on", "start")
_MEDIA_TITLES = (
    "the midnight train",
    "ocean eyes",
    "star voyage",
    "the long road home",
    "summer hits",
    "daily news briefing",
    "jazz for focus",
    "the silent forest",
    "lost in tokyo",
    "morning acoustic",
    "true crime weekly",
    "space odyssey",
    "golden hour",
    "rainy day lofi",
)
_ARTISTS = ("taylor swift", "the beatles", "adele", "miles davis", "coldplay", "bts", "drake")
_PROBLEMS = (
    "reset my password",
    "return an item",
    "get a refund",
    "contact customer service",
    "fix a damaged delivery",
    "cancel my subscription",
    "report a missing package",
    "talk to an agent",
    "change my payment method",
    "dispute a charge",
    "exchange a size",
)
_PAGES = (
    "home page",
    "cart",
    "checkout",
    "wish list",
    "settings page",
    "deals page",
    "electronics section",
    "gift cards page",
    "help center",
    "store locator",
    "my lists",
)
_ACCOUNT_ITEMS = (
    "shipping address",
    "email address",
    "phone number",
    "password",
    "display name",
    "notification preferences",
    "saved cards",
    "prime membership",
    "profile picture",
)

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "product_search": (
        "{q} {p}",
        "buy {p}",
        "{p}",
        "{p} for sale",
        "show me {q} {p}",
        "where can i buy {p}",
        "{q} {p} near me",
        "looking for a {q} {p}",
        "compare {p} prices",
        "{p} {q}",
        "i need new {p}",
        "top rated {p}",
    ),
    "media": (
        "{v} {t}",
        "{v} {t} by {a}",
        "{v} the {k} {t}",
        "{v} some {a}",
        "{k} {t}",
        "{v} the latest {k}",
        "i want to {v} {t}",
        "{v} {a} {k}",
        "next {k} please",
        "resume my {k}",
    ),
    "help_support": (
        "how do i {x}",
        "help me {x}",
        "i need to {x}",
        "can you help me {x}",
        "{x}",
        "how can i {x}",
        "i want to {x}",
        "problem with my order please help",
        "how to {x} online",
        "who can help me {x}",
    ),
    "navigation": (
        "go to {g}",
        "open the {g}",
        "take me to {g}",
        "show the {g}",
        "{g}",
        "navigate to {g}",
        "back to {g}",
        "open my {g}",
        "where is the {g}",
        "switch to {g}",
    ),
    "order_tracking": (
        "where is my {p}",
        "track my order",
        "when will my {p} arrive",
        "track package",
        "has my {p} shipped",
        "delivery status of my {p}",
        "is my order on the way",
        "order status",
        "where is my package",
        "estimated delivery for my {p}",
    ),
    "account": (
        "change my {c}",
        "update {c}",
        "edit my {c}",
        "update my {c} in my account",
        "how do i change my {c}",
        "my account {c}",
        "manage {c}",
        "set a new {c}",
        "view my {c}",
        "account {c} settings",
    ),
}


@dataclass(frozen=True, slots=True)
class LabelledQuery:
    text: str
    label: str


def generate_queries(n: int, seed: int) -> list[LabelledQuery]:
    """`n` queries, intents in equal shares (round robin), templates chosen at random."""
    rng = random.Random(seed)
    slots = {
        "p": _PRODUCTS, "q": _QUALIFIERS, "k": _MEDIA_KINDS, "v": _MEDIA_VERBS,
        "t": _MEDIA_TITLES, "a": _ARTISTS, "x": _PROBLEMS, "g": _PAGES, "c": _ACCOUNT_ITEMS,
    }  # fmt: skip
    out: list[LabelledQuery] = []
    for i in range(n):
        intent = INTENTS[i % len(INTENTS)]
        template = rng.choice(_TEMPLATES[intent])
        text = template.format(**{key: rng.choice(words) for key, words in slots.items()})
        if rng.random() < 0.2:
            text = text.capitalize() + rng.choice(("?", "!", ""))
        out.append(LabelledQuery(text=text, label=intent))
    rng.shuffle(out)
    return out


# ---- product records -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductRecord:
    title: str
    product_type: str
    description: str

    def as_text(self) -> str:
        """One segment of a packed pair: the three fields in a fixed order."""
        return f"{self.title} ; {self.product_type} ; {self.description}"


@dataclass(frozen=True, slots=True)
class _Product:
    brand: str
    noun: str
    product_type: str
    colour: str
    size: str
    pack: int
    material: str
    feature: str


@dataclass(frozen=True, slots=True)
class LabelledPair:
    a: ProductRecord
    b: ProductRecord
    duplicate: bool
    kind: str
    """paraphrase | colour | size | pack | other: how `b` was derived from `a`."""
    group: int
    """Index of the base product, so splits can keep a product on one side."""


_CATALOG: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("SHOES", "running shoe", ("6", "7", "8", "9", "10", "11", "12")),
    ("SHIRT", "t-shirt", ("S", "M", "L", "XL", "XXL")),
    ("SOCKS", "athletic socks", ("S", "M", "L")),
    ("BOTTLE", "water bottle", ("16 oz", "24 oz", "32 oz", "40 oz")),
    ("TOWEL", "bath towel", ("small", "medium", "large", "oversized")),
    ("MUG", "coffee mug", ("8 oz", "12 oz", "16 oz")),
    ("BATTERY", "AA battery", ("standard", "high capacity")),
    ("CABLE", "usb c cable", ("3 ft", "6 ft", "10 ft")),
    ("PILLOW", "throw pillow", ("16 inch", "18 inch", "20 inch")),
    ("JACKET", "rain jacket", ("S", "M", "L", "XL")),
    ("DETERGENT", "laundry detergent", ("50 fl oz", "100 fl oz", "150 fl oz")),
    ("PEN", "gel pen", ("fine", "medium", "bold")),
)
_BRANDS = (
    "Acme",
    "Northpeak",
    "Lumo",
    "Brightline",
    "Kestrel",
    "Orbit",
    "Solace",
    "Vanta",
    "Tidewater",
    "Ember",
    "Quill",
    "Halcyon",
    "Stratus",
    "Juniper",
)
_COLOURS = (
    "red",
    "blue",
    "black",
    "white",
    "green",
    "grey",
    "navy",
    "pink",
    "yellow",
    "purple",
)
_MATERIALS = ("cotton", "polyester", "stainless steel", "ceramic", "nylon", "recycled plastic")
_FEATURES = (
    "lightweight",
    "durable",
    "easy to clean",
    "eco friendly",
    "long lasting",
    "comfortable fit",
    "quick dry",
    "dishwasher safe",
    "travel ready",
)
_SYNONYMS = {
    "t-shirt": "tee",
    "running shoe": "runner",
    "water bottle": "drink bottle",
    "bath towel": "towel",
    "coffee mug": "mug",
    "usb c cable": "usb-c cord",
    "throw pillow": "cushion",
    "rain jacket": "raincoat",
    "laundry detergent": "washing liquid",
    "gel pen": "rollerball pen",
    "athletic socks": "sport socks",
    "AA battery": "AA cell",
}


def _random_product(rng: random.Random) -> _Product:
    product_type, noun, sizes = rng.choice(_CATALOG)
    return _Product(
        brand=rng.choice(_BRANDS),
        noun=noun,
        product_type=product_type,
        colour=rng.choice(_COLOURS),
        size=rng.choice(sizes),
        pack=rng.choice((1, 2, 3, 4, 6, 8, 10, 12, 24)),
        material=rng.choice(_MATERIALS),
        feature=rng.choice(_FEATURES),
    )


def _pack_text(pack: int, rng: random.Random) -> str:
    if pack == 1:
        return rng.choice(("single", "1 count", "pack of 1", ""))
    return rng.choice((f"pack of {pack}", f"{pack}-pack", f"{pack} count", f"set of {pack}"))


def _render(p: _Product, rng: random.Random, *, paraphrase: bool) -> ProductRecord:
    noun = _SYNONYMS.get(p.noun, p.noun) if paraphrase and rng.random() < 0.5 else p.noun
    parts = [p.brand, p.colour, noun, f"size {p.size}", _pack_text(p.pack, rng)]
    if paraphrase:
        head, tail = parts[:3], parts[3:]
        rng.shuffle(head)
        rng.shuffle(tail)
        parts = head + tail
    title = " ".join(part for part in parts if part)
    if paraphrase and rng.random() < 0.3:
        title = title.upper() if rng.random() < 0.5 else title.title()
    description = rng.choice(
        (
            f"{p.feature.capitalize()} {p.noun} made of {p.material}.",
            f"A {p.material} {noun} from {p.brand}, {p.feature}.",
            f"{p.brand} {noun} in {p.colour}; {p.material}; {p.feature}.",
        )
    )
    return ProductRecord(title=title, product_type=p.product_type, description=description)


def _change(p: _Product, attribute: str, rng: random.Random) -> _Product:
    """The same product with one attribute set to a different value."""
    if attribute == "colour":
        return replace(p, colour=rng.choice([c for c in _COLOURS if c != p.colour]))
    if attribute == "size":
        sizes = next(s for t, _, s in _CATALOG if t == p.product_type)
        return replace(p, size=rng.choice([s for s in sizes if s != p.size]))
    packs = (1, 2, 3, 4, 6, 8, 10, 12, 24)
    return replace(p, pack=rng.choice([k for k in packs if k != p.pack]))


PAIR_KINDS: tuple[str, ...] = ("paraphrase", "colour", "size", "pack", "other")
# Half the pairs are duplicates; the negatives are mostly the hard attribute variants.
_KIND_WEIGHTS = (0.5, 0.12, 0.12, 0.12, 0.14)


def generate_pairs(n: int, seed: int) -> list[LabelledPair]:
    """`n` labelled product pairs, about half of them duplicates."""
    rng = random.Random(seed)
    out: list[LabelledPair] = []
    for group in range(n):
        base = _random_product(rng)
        kind = rng.choices(PAIR_KINDS, weights=_KIND_WEIGHTS)[0]
        a = _render(base, rng, paraphrase=False)
        if kind == "paraphrase":
            b = _render(base, rng, paraphrase=True)
        elif kind == "other":
            other = _random_product(rng)
            # Same brand or same type half the time, so "different" is not just "unrelated".
            if rng.random() < 0.5:
                other = replace(other, brand=base.brand)
            b = _render(other, rng, paraphrase=rng.random() < 0.5)
        else:
            b = _render(_change(base, kind, rng), rng, paraphrase=rng.random() < 0.5)
        out.append(LabelledPair(a=a, b=b, duplicate=kind == "paraphrase", kind=kind, group=group))
    return out


def split_holdout(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Deterministic shuffle, then (train, held-out) with `fraction` held out."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    cut = round(len(items) * fraction)
    held = [items[i] for i in order[:cut]]
    train = [items[i] for i in order[cut:]]
    return train, held
