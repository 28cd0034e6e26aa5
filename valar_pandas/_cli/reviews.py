"""Synthetic product reviews for the demo: a deterministic, offline generator.

Owns :func:`make_reviews`, which composes realistic e-commerce reviews (with the sentiment
the generator intended as ``label``) from the phrase banks below, using only
``random.Random(seed)``, so the same ``(n, seed)`` gives the same frame in every process.
Phrase banks are tuples built from ``|``-separated text to keep them compact.
"""

from __future__ import annotations

import functools
import random
import re

import pandas as pd

__all__ = ["make_reviews"]


def _bank(text: str) -> tuple[str, ...]:
    """Split ``|``-separated phrases into a tuple, collapsing runs of whitespace."""
    return tuple(" ".join(p.split()) for p in text.split("|") if p.strip())


_LABELS = ("positive", "negative", "neutral")
_LABEL_WEIGHTS = (50, 30, 20)
_DTYPES = {"review_id": "str", "product": "str", "category": "str", "stars": "int64",
           "review": "str", "label": "str"}  # fmt: skip
# label -> (star values, weights): consistent with the label, with realistic disagreement.
_STARS = (((5, 4, 3), (62, 31, 7)), ((1, 2, 3, 4), (55, 32, 11, 2)), ((3, 4, 2), (62, 22, 16)))


def _tones(text: str) -> tuple[tuple[str, ...], ...]:
    """Split ``||``-separated banks (positive, negative[, neutral]) into a tuple of tuples."""
    return tuple(_bank(part) for part in text.split("||"))


# category -> (products "name = noun" || positive || negative || neutral aspect clauses). Clauses
# are lower-case and unpunctuated; "noun/noun@clause" fits only products of those nouns, and
# "!noun@clause" every product but those.
_CATALOG: dict[str, tuple[tuple[str, ...], ...]] = {
    "Headphones": _tones("""Aurora X2 Wireless Earbuds = pair of earbuds | Tidal Pro
    Noise-Cancelling Headphones = pair of headphones | Bassline 300 Over-Ear Headphones = pair of
    headphones | Echo Sport Neckband Earphones = pair of earphones | Nimbus Kids Volume-Limited
    Headphones = pair of headphones | Quill Studio Monitor Headphones = pair of headphones
    || the sound is crisp and the bass is punchy without being muddy | battery life is excellent, I
    get about {hours} hours per charge | they fit snugly and don't fall out even when I run | noise
    cancelling is shockingly good for the price | pairing with my phone took two seconds | calls
    sound clear, people say I sound like I'm right next to them | they're comfortable enough to wear
    for a whole workday | the sound is great | pair of earbuds@the case is tiny
    || the left side keeps disconnecting | battery barely lasts {low} hours | they hurt my ears
    after about an hour | the sound is tinny with basically no bass | there's a noticeable delay
    when watching videos | the mic makes me sound like I'm in a tunnel | one side stopped working
    completely after {dur} | the touch controls trigger every time I adjust them | pair of
    earbuds@the case feels cheap
    || sound is about what you'd expect at this price | battery life is okay, nothing special | fit
    is fine for me but might not suit smaller ears | noise cancelling takes the edge off but doesn't
    block much"""),
    "Kitchen": _tones("""Kestrel 12-Cup Coffee Maker = coffee maker | Ember 10-Inch Cast Iron
    Skillet = skillet | Vortex 5.8 Qt Air Fryer = air fryer | Silo Glass Food Storage Set =
    container set | Brisk Electric Gooseneck Kettle = kettle | Harvest Bamboo Cutting Board =
    cutting board
    || !container set/cutting board@it heats up fast and evenly | cleanup is a breeze | it's sturdy
    and feels like it will last for years | coffee maker/air fryer/kettle@it fits on my counter
    without taking over | skillet/air fryer@everything I've made with it tastes great | container
    set@the lids seal tight and it's dishwasher safe | it looks great in my kitchen |
    !skillet/cutting board@no weird plastic smell at all | coffee maker@the coffee is hot and tastes
    great | kettle@it boils water in about three minutes | cutting board@it doesn't dull my knives |
    skillet@the seasoning is great right out of the box
    || skillet@it started rusting after {dur} | coffee maker/air fryer/kettle@there's a strong
    chemical smell that won't go away | skillet/air fryer/cutting board@the finish started peeling |
    it's a pain to clean | !skillet/air fryer/cutting board@it leaks every single time |
    skillet/kettle@the handle gets way too hot | it's much smaller than it looks in the pictures |
    container set/cutting board@it cracked the first time I used it | skillet/air fryer@food sticks
    to it no matter what I do | coffee maker@the coffee tastes burnt
    || coffee maker/air fryer@it's a bit bulky but works | cleaning it is okay, not great |
    !container set/cutting board@it heats up at an average speed | it does what a {noun} should do |
    it's decent quality, just not as sturdy as I hoped"""),
    "Books": _tones("""The Salt Road: A Novel = novel | Quiet Engines (Paperback) = novel |
    Practical Sourdough Baking = cookbook | The Last Lighthouse Keeper = novel | Small Habits, Big
    Money = book | Midnight at the Ferris Wheel = novel
    || novel@the plot grabbed me from the first chapter | novel@the characters feel like real people
    | !cookbook@I couldn't put it down and finished it in two nights | the writing is clear without
    being fussy | novel@the ending completely surprised me | !novel@it's full of practical advice I
    actually used | novel@the pacing is perfect | the paper and print quality are really nice |
    cookbook@every recipe I've tried has worked | cookbook@the photos are gorgeous
    || novel@the plot drags for the entire middle section | novel@the characters are flat and
    forgettable | novel@the ending felt rushed and made no sense | it's full of typos and formatting
    errors | I gave up halfway through | !novel@it's the same stuff you can find for free online |
    novel@the dialogue is painfully cheesy | my copy arrived with bent pages | cookbook@half the
    measurements seem to be wrong
    || novel@the story is fine but predictable | some chapters are great, others drag | the writing
    is competent but not memorable | !cookbook@it's an okay read for a long flight | cookbook@a few
    recipes are great, most are just okay"""),
    "Outdoor": _tones("""Ridgeline 2-Person Backpacking Tent = tent | Trailhead 40L Hiking Backpack
    = backpack | Summit Insulated Water Bottle 32 oz = bottle | Campfire Folding Camp Chair = chair
    | Lumen 400 Rechargeable Headlamp = headlamp | Driftwood Hammock with Straps = hammock
    || tent@it kept me completely dry through a night of rain | !backpack/chair@it's really light, I
    barely notice it in my pack | tent/hammock/chair@setup took about five minutes, even alone |
    tent/backpack@the zippers and seams feel solid | it held up great on a week-long trip |
    tent/chair/hammock@it packs down smaller than I expected | backpack@it's comfortable even after
    a full day of hiking | it's tough enough for real trails | bottle@it keeps ice frozen for a full
    day | headlamp@the beam is bright and lasts all night | chair@it's really comfortable around the
    campfire | hammock@it's so comfortable I fell asleep in it
    || tent@it leaked the first time it rained | !bottle/headlamp@a seam ripped on the second trip |
    tent/backpack@the zipper broke within {dur} | it's much heavier than advertised |
    tent/chair/hammock@the instructions are confusing and parts were missing | backpack@the straps
    dig into your shoulders | tent/backpack/hammock@it smells like chemicals even after airing it
    out | bottle/chair@the coating started flaking after one trip | bottle@the lid leaks all over my
    bag | headlamp@the strap stretched out and it keeps sliding down | headlamp@the battery dies
    after about an hour
    || it's a little heavy but manageable | tent/chair/hammock@it works fine for car camping, maybe
    not backpacking | tent/hammock@setup takes some practice | quality is okay for occasional
    weekend use | bottle@it keeps drinks cold most of the day, not all of it | headlamp@it's bright
    enough for camp chores | backpack@the pockets are handy, but the hip belt is flimsy"""),
    "Toys": _tones("""Rocket Builders 250-Piece Block Set = block set | Wobble Bear Plush Toy = bear
    | Turbo Twist RC Stunt Car = car | Puzzle Planet 1000-Piece Jigsaw = puzzle | Tiny Chef Play
    Kitchen = play kitchen | Starlight Magnetic Tiles (60 pcs) = tile set
    || my {kid} plays with it every single day | it kept the kids busy for hours |
    !bear/car/puzzle@the pieces are sturdy and survived a lot of drops | play kitchen@it was easy to
    put together | the colors are bright and fun | !bear/car/play kitchen@it's great for building
    fine motor skills | !bear/puzzle@no sharp edges, which I really appreciate | it made a perfect
    birthday gift | bear@it's super soft and survived the washing machine | car@it's fast and
    handles flips like a champ | puzzle@the pieces fit together snugly
    || !bear/puzzle@it broke within ten minutes of opening | !bear/car@pieces were missing from the
    box | car@the batteries drain ridiculously fast | !bear/car/play kitchen@it's way too hard for
    the age on the box | car/play kitchen@the paint is already chipping | block set/play kitchen@the
    instructions make no sense | it's much smaller than it looks | my {kid} lost interest after a
    day | bear@the seams came apart after one wash | tile set@the magnets are way too weak
    || my {kid} likes it, but doesn't play with it much | it's fine as a small gift | block set/play
    kitchen@assembly took longer than expected but it works | it's okay, just not very durable"""),
    "Home Office": _tones("""Atlas Adjustable Standing Desk = desk | Pivot Ergonomic Mesh Office
    Chair = chair | Glide Wireless Ergonomic Mouse = mouse | Keystone Mechanical Keyboard = keyboard
    | Halo LED Desk Lamp = lamp | Stacker Monitor Riser with Drawer = riser
    || desk/chair/riser@assembly took about twenty minutes and the instructions were clear |
    !mouse/keyboard@it's rock solid with no wobble | desk/chair@my back pain has gotten noticeably
    better | desk/mouse@it's whisper quiet | the build quality is excellent | !desk/chair@it fits
    perfectly on my desk | !desk/lamp/riser@it's comfortable for long workdays | mouse/keyboard@the
    buttons feel clicky and responsive | lamp@the light is warm and doesn't give me a headache |
    keyboard@the keys feel amazing to type on | desk@the motor is smooth and the presets are handy
    || !mouse/keyboard@it wobbles no matter how I adjust it | desk/chair/riser@the instructions were
    missing steps | !mouse/keyboard@one of the screws was stripped right out of the box |
    desk/chair@it squeaks every time I move | desk/riser/lamp@the finish scratched in the first week
    | mouse/keyboard@it stopped connecting after {dur} | desk/chair/lamp@it's not nearly as
    adjustable as advertised | lamp@the light flickers constantly | keyboard@a few keys double-type
    | mouse@the scroll wheel is already mushy | chair@the armrests are wobbly and cheap |
    mouse/keyboard@the battery drains way faster than advertised
    || desk/chair/riser@assembly was a bit tedious but doable | it's sturdy enough for a home office
    | !desk/lamp/riser@comfort is fine for a few hours at a time | it's a solid basic option |
    lamp@the brightness is fine, the light is a bit cold"""),
    "Beauty": _tones("""Velvet Rose Hydrating Face Cream = cream | Clearwave Vitamin C Serum = serum
    | Silk Ends Argan Hair Oil = oil | Glow Mineral Sunscreen SPF 50 = sunscreen | Cedar & Sage
    Beard Balm = balm | Lumi Sonic Facial Cleansing Brush = brush
    || !oil/balm/brush@my skin feels soft and hydrated all day | !brush@it smells amazing without
    being overpowering | !brush@a little goes a long way | !brush@it absorbs quickly and isn't
    greasy | I've noticed a real difference after {dur} | !oil/balm@it didn't break me out, even
    with sensitive skin | !brush@the texture is lovely | oil@my hair has never been this shiny |
    balm@my beard is way softer and less itchy | brush@my skin feels so clean afterwards | brush@the
    battery lasts for weeks
    || !oil/balm@it broke me out within two days | !brush@the smell is overwhelming and fake |
    !serum/brush@it leaves a greasy film | !oil/balm/brush@it stings when I put it on |
    !cream/balm/brush@the pump stopped working halfway through | it does absolutely nothing as far
    as I can tell | sunscreen@it left a white cast on my skin | serum/oil@the bottle leaked all over
    the box | brush@it stopped holding a charge after {dur} | balm@it's hard as a rock and
    impossible to scoop
    || !brush@the smell is fine, not my favorite | I haven't noticed much difference yet |
    !serum/oil/brush@the texture is a bit thick | !oil/balm/brush@it works okay under makeup |
    brush@it's gentle but the bristles feel a bit cheap | oil/balm@it's a little greasy, but it
    works | brush@it cleans fine, nothing life-changing"""),
    "Phone Accessories": _tones("""Armor Flex Phone Case = case | Volt 20W USB-C Fast Charger =
    charger | PowerPocket 10,000mAh Power Bank = power bank | ClearShield Tempered Glass Screen
    Protector = screen protector | Grip Magnetic Car Mount = mount | Braided USB-C Cable 6 ft
    (2-Pack) = cable
    || charger/power bank/cable@it charges my phone really fast | case/screen protector@it fits my
    phone perfectly | case/screen protector@it survived a drop onto concrete without a scratch | it
    feels really durable | charger/power bank/cable@it's held up fine in my bag for {dur} | screen
    protector@installation was bubble free | mount@it holds my phone steady even on bumpy roads |
    case@the buttons are easy to press | power bank@it charges my phone about three times on one
    charge | cable@the braiding feels like it'll outlast my phone | mount@it's easy to adjust with
    one hand
    || charger/power bank/cable@it stopped charging after {dur} | charger/power bank@it gets
    alarmingly hot | case@the cutouts don't line up with the camera | case/screen protector@it
    cracked the first time I dropped my phone | screen protector@it's full of bubbles no matter what
    I do | mount@it falls off every time I hit a bump | charger/power bank/cable@it's slower than my
    old one | cable@the end frayed within weeks | screen protector@touch sensitivity got noticeably
    worse | case@the edges started peeling after {dur} | mount@the magnet is too weak to hold my
    phone
    || charger/power bank/cable@it charges at a normal speed | case/mount@fit is fine but a little
    loose | !screen protector/cable@it's bulkier than I'd like | it does the job, nothing fancy |
    screen protector@it's clear, but the edges lift a little | cable@it's a little stiff, but it
    works"""),
}
_PRODUCTS = {
    category: tuple((name, noun) for name, _, noun in (p.partition(" = ") for p in banks[0]))
    for category, banks in _CATALOG.items()
}
_CATEGORIES = tuple(_CATALOG)
# Banks for any product: (positive || negative || neutral); _MINOR is (faint praise || gripes).
_GENERIC = _tones("""it arrived a day early | packaging was neat and nothing was damaged | for the
price you really can't beat it | customer service answered my question within an hour | it looks
even better in person than in the photos | it feels really well made | it was a gift for {person},
who loves it
|| it showed up {late} days late | the box was crushed and the {noun} inside was damaged | it's way
overpriced for what you get | customer service never got back to me | it looks nothing like the
photos | it feels cheap and flimsy | it died right after the return window closed
|| shipping took about a week | packaging was pretty basic | the price is fair, not a steal | it
looks pretty much like the photos | it's about the same as {other}""")
_MINOR = _tones("""it looks nice | shipping was fast | the packaging was nice | the price was good
|| the packaging was excessive | shipping was a bit slow | it's pricier than I'd like | the box was
a little dented | it took a while to get used to""")
_OPENERS = _tones("""Love this {noun}! | Really happy with this purchase. | Five stars, no question.
| I was skeptical, but this {noun} won me over. | Exactly what I was looking for. | Best {noun} I've
ever owned. | So glad I finally bought this. | Great little {noun}. | Honestly impressed. | This is
my second one and I still love it. | Wow.
|| Very disappointed. | Do not buy this {noun}. | What a waste of money. | I really wanted to like
this {noun}. | Not impressed at all. | This {noun} is junk. | Worst purchase I've made this year. |
Ugh. | I had high hopes, but no. | Save your money.
|| It's okay. | Mixed feelings about this one. | Does the job, I guess. | Decent {noun}, nothing
amazing. | Not bad, not great. | It's fine for the price. | Middle of the road. | Pretty average
{noun}.""")
_CLOSERS = _tones("""Would definitely buy again. | Highly recommend! | Bought a second one as a gift
for {person}. | Much better than {other}. | {person} keeps borrowing it. | Worth every penny. |
10/10 would recommend. | No regrets. | Really glad I didn't go with {other}.
|| Wouldn't buy again. | Returning it. | Not worth the money. | Already sent it back for a refund. |
Stick with {other}. | The seller refunded me, at least. | Going back to {other}. | Avoid. | Honestly
regret buying it. | Zero stars if I could. | Would not recommend.
|| Might keep it, might return it. | It's fine if you don't expect much. | Would probably shop
around more next time. | Okay for occasional use. | Can't really complain for the price. | It'll do
for now. | Not sure I'd buy it again, but it's fine.""")
_SHORT = _tones("""Works great. | Love it! | Perfect. | Exactly as described. | Great value. | Five
stars. | Super happy with it. | Does exactly what it says. | Great {noun}! | Awesome!! | Very nice
{noun}, fast shipping.
|| Junk. | Broke after {dur}. | Don't waste your money. | Returned it. | Stopped working after
{dur}. | Total garbage. | Not as described. | Cheap {noun}, broke fast.
|| It's okay. | Fine. | Does the job. | Average {noun}. | As expected. | Meh. | It works, I guess. |
Okay for the price.""")
_TIME_PREFIXES = _bank("""after {dur}, | been using it for {dur} and | {dur} in and | update after
{dur}: | so far, after {dur},""")
_CONTRASTS = (", but ", ", though ", ". That said, ", "... but ", "; however, ", " but ")
_LEADINS = _bank("honestly, | I have to say | tbh | seriously,")
_DURATIONS = _bank("""two days | a week | three weeks | a month | two months | six months | almost a
year | a couple of weeks | ten days""")
_PEOPLE = _bank("""my wife | my husband | my son | my daughter | my mom | my dad | a coworker | my
sister | my roommate | my boyfriend""")
_OTHERS = _bank("""my old one | the cheaper brand | the one I had before | the name-brand version |
the big-box store version | the last one I bought""")
_KIDS = _bank("son | daughter | toddler | nephew | niece | 5-year-old | grandson")
_EMPHASIS = ("love", "great", "never", "not", "terrible", "worst", "best", "really", "so", "junk")
_MISSPELL = tuple(
    pair.partition(">")
    for pair in _bank("""definitely>definately | recommend>reccomend | disappointed>dissapointed |
    really>realy | the>teh | than>then | it's>its | doesn't>dosen't | quality>qaulity""")
)
_LENGTH_WEIGHTS = (12, 26, 30, 20, 12)  # 1..5 sentences


def _cap(text: str) -> str:
    """Upper-case the first character only."""
    return text[:1].upper() + text[1:]


@functools.cache
def _fitting(category: str, noun: str, tone: int) -> tuple[str, ...]:
    """Aspect clauses of ``tone`` for ``category`` that suit a product called ``noun``."""
    pool = (clause.rpartition("@") for clause in _CATALOG[category][tone + 1])
    return tuple(
        text
        for tags, _, text in pool
        if not tags or (noun in tags.lstrip("!").split("/")) != tags.startswith("!")
    )


def _pick(rng: random.Random, pool: tuple[str, ...], used: set[str]) -> str:
    """Pick a clause from ``pool``, avoiding the ones this review already used."""
    fresh = [clause for clause in pool if clause not in used]
    clause = rng.choice(fresh or pool)
    used.add(clause)
    return clause


def _body(rng: random.Random, label: int, product: tuple[str, str], n_aspects: int) -> list[str]:
    """Aspect sentences for a review of tone ``label`` about a (category, noun)."""
    used: set[str] = set()
    own = [_fitting(*product, tone) for tone in range(3)]
    out: list[str] = []
    mixed = rng.random() < (0.6 if label == 2 else 0.3) or (label == 2 and n_aspects == 1)
    mixed_at = rng.randrange(n_aspects) if mixed else -1
    for i in range(n_aspects):
        end = "."
        if i == mixed_at:  # one side about the product itself, the other generic
            if label == 0 or (label == 2 and rng.random() < 0.5):
                good = _pick(rng, own[0], used)
                bad = _pick(rng, _MINOR[1] + (_GENERIC[1] if label == 2 else ()), used)
            else:
                good, bad = _pick(rng, _MINOR[0] + _GENERIC[0], used), _pick(rng, own[1], used)
            if label == 0 and rng.random() < 0.4:  # "a mild gripe, but <praise>"
                good, bad = bad, good
            text = good + rng.choice(_CONTRASTS) + bad
        elif i == 0 and product[0] != "Books" and rng.random() < 0.22:  # time in use
            text = _pick(rng, own[label], used)
            if "{dur}" not in text:
                text = rng.choice(_TIME_PREFIXES) + " " + text
        elif label != 2 and rng.random() < (0.5 if n_aspects == 1 else 0.15):
            pool = own[label] * 2 + _GENERIC[label]
            first, second = _pick(rng, pool, used), _pick(rng, pool, used)
            text = first + rng.choice((", and ", ", plus ", ". Also, ", " and ")) + second
        else:
            text = _pick(rng, own[label] * 2 + _GENERIC[label], used)
            if rng.random() < 0.07:
                text = rng.choice(_LEADINS) + " " + text
            end = "!" if label == 0 and rng.random() < 0.15 else "."
        out.append(_cap(text) + end)
    return out


def _noise(rng: random.Random, text: str, label: int) -> str:
    """Casual punctuation, emphasis and the occasional typo."""
    if label != 2 and rng.random() < 0.05:
        words = [w for w in _EMPHASIS if re.search(rf"\b{w}\b", text, re.IGNORECASE)]
        if words:
            word = rng.choice(words)
            text = re.sub(rf"\b{word}\b", word.upper(), text, count=1, flags=re.IGNORECASE)
    if label != 2 and text.endswith(".") and rng.random() < 0.08:
        text = text[:-1] + rng.choice(("!", "!!", "!!!"))
    if rng.random() < 0.02:  # a typo, when the text has a word people often get wrong
        wrong = [(a, b) for a, _, b in _MISSPELL if re.search(rf"\b{a}\b", text)]
        if wrong:
            a, b = rng.choice(wrong)
            text = re.sub(rf"\b{a}\b", b, text, count=1)
    if rng.random() < 0.03:
        text = text.lower().rstrip(".")
    elif rng.random() < 0.03:
        text = text.replace(". ", "... ", 1)
    return text


def _review(rng: random.Random, label: int, category: str, noun: str) -> str:
    """Compose one review of tone ``label`` (0 positive, 1 negative, 2 neutral)."""
    fills = {"noun": noun, "dur": rng.choice(_DURATIONS), "person": rng.choice(_PEOPLE),
             "other": rng.choice(_OTHERS), "kid": rng.choice(_KIDS), "low": str(rng.randint(2, 5)),
             "hours": str(rng.randint(18, 40)), "late": rng.choice(("two", "three"))}  # fmt: skip
    if rng.random() < 0.03:
        parts = [rng.choice(_SHORT[label])]
    else:
        n_sent = rng.choices(range(1, 6), weights=_LENGTH_WEIGHTS)[0]
        opener = n_sent >= 2 and rng.random() < 0.6
        closer = n_sent - opener >= 2 and rng.random() < 0.55
        parts = _body(rng, label, (category, noun), n_sent - opener - closer)
        if opener:
            parts.insert(0, rng.choice(_OPENERS[label]))
        if closer:
            parts.append(rng.choice(_CLOSERS[label]))
    text = " ".join(_cap(p.format_map(fills)) for p in parts)
    return _noise(rng, text, label)


def make_reviews(n: int = 2000, *, seed: int = 7) -> pd.DataFrame:
    """Generate ``n`` synthetic product reviews with their intended sentiment.

    The result depends only on ``(n, seed)``: the same arguments give an identical frame in
    any process. Roughly half the reviews are positive, 30% negative and 20% neutral; star
    ratings follow the label with some realistic disagreement.

    Args:
        n: Number of reviews (rows); 0 gives an empty frame with the same columns.
        seed: Seed for the private ``random.Random`` that drives every choice.

    Returns:
        A new frame with a default RangeIndex and the columns ``review_id``, ``product``,
        ``category``, ``stars`` (int64, 1–5), ``review`` and ``label`` (``"positive"``,
        ``"negative"`` or ``"neutral"``).

    Raises:
        ValueError: If ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    records: list[tuple[str, str, str, int, str, str]] = []
    for i in range(1, n + 1):
        label = rng.choices(range(3), weights=_LABEL_WEIGHTS)[0]
        category = rng.choice(_CATEGORIES)
        product, noun = rng.choice(_PRODUCTS[category])
        stars = rng.choices(*_STARS[label])[0]
        review = _review(rng, label, category, noun)
        records.append((f"R-{i:06d}", product, category, stars, review, _LABELS[label]))
    return pd.DataFrame(records, columns=list(_DTYPES)).astype(_DTYPES)
