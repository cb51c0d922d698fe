"""A random English sentence grammar for the synthesised mini corpus.

Sentences are written the way a person would type them (digits for numbers, punctuation),
so that `normalize_english` produces the transcript exactly as it does for the real test set.
Ordinals and spoken-only forms ("o'clock", "B as in bravo") are written as words.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from lexicon import Lexicon, Noun, Verb

DETERMINERS = ("the", "a", "my", "your", "our", "their", "this", "that", "his", "her")
PLURAL_DETERMINERS = ("the", "some", "these", "those", "my", "our", "two", "three", "many")
PREPOSITIONS = ("in", "near", "behind", "under", "next to", "outside", "inside", "across from")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)  # fmt: skip
ORDINALS = (
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
    "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
    "seventeenth", "eighteenth", "nineteenth", "twentieth", "twenty first", "twenty second",
    "twenty third", "twenty fourth", "twenty fifth", "twenty sixth", "twenty seventh",
    "twenty eighth", "twenty ninth", "thirtieth", "thirty first",
)  # fmt: skip
NATO = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "x ray", "yankee", "zulu",
)  # fmt: skip
TIME_WORDS = ("today", "tomorrow", "yesterday", "tonight", "this morning", "last night",
              "next week", "this afternoon", "on the weekend", "every day")  # fmt: skip
KEYS = ("pound key", "hash key", "star key", "pound sign")
ENTRIES = ("account number", "pin", "member number", "zip code", "date of birth",
           "phone number", "card number", "order number", "access code", "extension",
           "employee number", "policy number", "room number", "security code")  # fmt: skip
DEPARTMENTS = ("billing", "sales", "technical support", "customer service", "the operator",
               "the front desk", "reservations", "pharmacy refills", "account balances",
               "shipping", "returns", "the company directory", "new orders", "repairs")  # fmt: skip
ACTIONS = ("check your balance", "make a payment", "speak with an agent", "hear your messages",
           "change your greeting", "record a new message", "repeat these options",
           "return to the main menu", "track a package", "report a lost card",
           "schedule an appointment", "cancel an order", "leave a message",
           "update your address", "reset your password", "hear our hours")  # fmt: skip
STATUSES = ("confirmed", "cancelled", "rescheduled", "received", "approved", "shipped",
            "delayed", "updated", "declined", "completed")  # fmt: skip
HOLD_REASONS = ("transfer your call", "check your account", "connect you", "find an agent")
DIALED_PROBLEMS = ("has been disconnected", "is busy", "is not answering", "has changed")
BUSINESSES = ("and Sons", "Insurance", "Medical Center", "Bank", "Airlines", "Hardware")
WEATHER = ("sunny", "cloudy", "rainy", "windy", "foggy", "cold", "warm", "humid", "snowy")


class Grammar:
    """Draws sentences from weighted templates; all randomness comes from `rng`."""

    def __init__(self, lexicon: Lexicon, rng: random.Random) -> None:
        self.lx = lexicon
        self.r = rng
        self.templates: list[tuple[int, Callable[[], str]]] = [
            (6, self.narrative),
            (3, self.intransitive),
            (3, self.description),
            (4, self.question),
            (4, self.command),
            (3, self.assistant),
            (3, self.numbers),
            (3, self.dates),
            (2, self.travel),
            (2, self.weather),
            (9, self.phone_prompt),
            (3, self.voicemail),
            (2, self.spelling),
            (1, self.digit_string),
        ]

    def sentence(self) -> str:
        """One sentence from a template chosen by weight.

        Only names, spelled letters and "I" are capitalised, so an upper-case single letter
        is always a spelled letter.
        """
        weights = [w for w, _ in self.templates]
        _, template = self.r.choices(self.templates, weights=weights)[0]
        return template()

    # Building blocks.

    def pick(self, items: Sequence[str] | Sequence[Noun] | Sequence[Verb]):
        """One item, uniformly."""
        return self.r.choice(items)

    def maybe(self, text: str, p: float = 0.5) -> str:
        """`text` with probability `p`, else the empty string."""
        return text if self.r.random() < p else ""

    def noun_phrase(self, nouns: tuple[Noun, ...], plural_p: float = 0.25) -> str:
        noun = self.pick(nouns)
        adjective = self.maybe(self.pick(self.lx.adjectives), 0.45)
        if self.r.random() < plural_p:
            return join(self.pick(PLURAL_DETERMINERS), adjective, noun.plural)
        return article(join(self.pick(DETERMINERS), adjective, noun.singular))

    def person(self) -> str:
        choice = self.r.random()
        if choice < 0.35:
            return self.pick(self.lx.first_names)
        if choice < 0.5:
            return join(self.pick(self.lx.first_names), self.pick(self.lx.surnames))
        if choice < 0.6:
            return join(self.pick(("Mister", "Doctor", "Miss", "Professor")),
                        self.pick(self.lx.surnames))  # fmt: skip
        if choice < 0.75:
            return self.pick(("I", "we", "you", "they", "she", "he"))
        return self.noun_phrase(self.lx.people, plural_p=0.0)

    def place(self) -> str:
        if self.r.random() < 0.3:
            return self.pick(self.lx.cities)
        return join(self.pick(("the", "a", "our", "her")), self.pick(self.lx.places).singular)

    def clock(self) -> str:
        hour = self.r.randint(1, 12)
        form = self.r.random()
        if form < 0.3:
            return f"{hour} o'clock"
        if form < 0.7:
            return f"{hour} {self.pick(('15', '30', '45', '20', '10', '50'))}"
        if form < 0.85:
            return f"{hour} {self.pick(('in the morning', 'in the afternoon', 'in the evening'))}"
        return self.pick(("noon", "midnight", f"half past {hour}", f"a quarter to {hour}"))

    def date(self) -> str:
        month, day = self.pick(MONTHS), self.pick(ORDINALS)
        form = self.r.random()
        if form < 0.4:
            return f"{month} {day}"
        if form < 0.7:
            return f"{self.pick(WEEKDAYS)} {month} {day}"
        return f"the {day} of {month}"

    def digits(self, low: int, high: int) -> str:
        return " ".join(str(self.r.randint(0, 9)) for _ in range(self.r.randint(low, high)))

    def verb_phrase(self, verb: Verb, subject: str) -> str:
        tense = self.r.random()
        if tense < 0.45:
            return verb.past
        if tense < 0.6:
            return verb.base if subject in ("I", "we", "you", "they") else verb.third
        if tense < 0.75:
            return f"will {verb.base}"
        if tense < 0.88:
            have = "have" if subject in ("I", "we", "you", "they") else "has"
            return f"{have} {verb.participle}"
        return f"{self.pick(('should', 'could', 'might', 'must', 'can'))} {verb.base}"

    # Templates.

    def narrative(self) -> str:
        subject = self.person()
        verb = self.pick(self.lx.verbs)
        obj = self.noun_phrase(self.r.choice((self.lx.things, self.lx.abstract, self.lx.animals)))
        tail = self.pick((
            "",
            f"{self.pick(PREPOSITIONS)} {self.place()}",
            self.pick(TIME_WORDS),
            self.pick(self.lx.adverbs),
            f"for {self.person()}",
            f"on {self.pick(WEEKDAYS)}",
        ))  # fmt: skip
        return join(subject, self.verb_phrase(verb, subject), obj, tail) + "."

    def intransitive(self) -> str:
        subject = self.person()
        verb = self.pick(self.lx.intransitive)
        tail = self.pick((
            f"{self.pick(PREPOSITIONS)} {self.place()}",
            self.pick(self.lx.adverbs),
            f"until {self.clock()}",
            f"after the {self.pick(self.lx.abstract).singular}",
            f"with {self.person()}",
        ))  # fmt: skip
        return join(subject, self.verb_phrase(verb, subject), tail) + "."

    def description(self) -> str:
        noun = self.noun_phrase(self.r.choice((self.lx.things, self.lx.places, self.lx.animals)),
                                plural_p=0.0)  # fmt: skip
        adjectives = self.r.sample(self.lx.adjectives, 2)
        form = self.r.random()
        if form < 0.4:
            return f"{noun} {self.pick(('is', 'was', 'seems', 'looks'))} {adjectives[0]}."
        if form < 0.7:
            return f"{noun} is {adjectives[0]} and {adjectives[1]}."
        return f"There is {noun} {self.pick(PREPOSITIONS)} {self.place()}."

    def question(self) -> str:
        thing = self.noun_phrase(self.lx.things, plural_p=0.0)
        verb = self.pick(self.lx.verbs)
        return self.pick((
            f"Did you {verb.base} {thing}?",
            f"Where is {thing}?",
            f"Why did {self.person()} {verb.base} {thing}?",
            f"How many {self.pick(self.lx.things).plural} are {self.pick(PREPOSITIONS)} "
            f"{self.place()}?",
            f"Can you {verb.base} {thing} before {self.clock()}?",
            f"What time does {self.place()} open on {self.pick(WEEKDAYS)}?",
            f"Is {self.pick(self.lx.first_names)} still at {self.place()}?",
            f"Who {verb.past} {thing}?",
            f"When will the {self.pick(self.lx.abstract).singular} be {self.pick(STATUSES)}?",
            f"Do you know where {self.person()} put {thing}?",
        ))  # fmt: skip

    def command(self) -> str:
        verb = self.pick(self.lx.verbs)
        obj = self.noun_phrase(self.r.choice((self.lx.things, self.lx.abstract)))
        tail = self.pick((
            "",
            self.pick(TIME_WORDS),
            f"{self.pick(PREPOSITIONS)} {self.place()}",
            f"before {self.clock()}",
            self.pick(self.lx.adverbs),
        ))  # fmt: skip
        return join(self.maybe("please", 0.4), verb.base, obj, tail) + "."

    def assistant(self) -> str:
        return self.pick((
            f"Set an alarm for {self.clock()}.",
            f"Set a timer for {self.r.randint(2, 90)} minutes.",
            f"Remind me to {self.pick(self.lx.verbs).base} the "
            f"{self.pick(self.lx.things).singular} {self.pick(TIME_WORDS)}.",
            f"Call {self.person()} on {self.pick(('her', 'his', 'their'))} mobile.",
            f"Turn {self.pick(('on', 'off'))} the lights in the "
            f"{self.pick(('kitchen', 'bedroom', 'garage', 'hallway', 'office', 'basement'))}.",
            f"Send a message to {self.pick(self.lx.first_names)} saying I will be late.",
            f"Add {self.pick(self.lx.food).plural} to my shopping list.",
            f"What is the weather like in {self.pick(self.lx.cities)}?",
            f"Play some music by {self.pick(self.lx.first_names)} {self.pick(self.lx.surnames)}.",
            f"Book a table for {self.r.randint(2, 12)} at {self.clock()}.",
        ))  # fmt: skip

    def numbers(self) -> str:
        things = self.pick(self.lx.things).plural
        abstract = self.pick(self.lx.abstract).singular
        people = self.pick(self.lx.people).plural
        return self.pick((
            f"The total is {self.r.randint(2, 999)} dollars and {self.r.randint(2, 99)} cents.",
            f"We need {self.r.randint(2, 60)} {things} for the {abstract}.",
            f"Room {self.r.randint(100, 999)} is on the {self.pick(ORDINALS[:12])} floor.",
            f"About {self.r.randint(2, 99)} percent of the {people} agreed.",
            f"The {self.pick(self.lx.places).singular} is {self.r.randint(2, 80)} miles from "
            f"{self.pick(self.lx.cities)}.",
            f"She paid {self.r.randint(3, 2000)} dollars for {self.r.randint(2, 9)} {things}.",
            f"Order number {self.digits(4, 6)} has {self.r.randint(2, 12)} items.",
            f"The score was {self.r.randint(0, 9)} to {self.r.randint(0, 9)}.",
        ))  # fmt: skip

    def dates(self) -> str:
        return self.pick((
            f"The {self.pick(self.lx.abstract).singular} is due on {self.date()}.",
            f"{self.person()} was born on {self.date()}.",
            f"We moved to {self.pick(self.lx.cities)} in {self.r.randint(1950, 2025)}.",
            f"The meeting is on {self.pick(WEEKDAYS)} at {self.clock()}.",
            f"Your {self.pick(('appointment', 'reservation', 'delivery', 'flight'))} is on "
            f"{self.date()} at {self.clock()}.",
            f"The {self.pick(self.lx.places).singular} is closed from {self.date()} until "
            f"{self.date()}.",
        ))  # fmt: skip

    def travel(self) -> str:
        place = self.pick(self.lx.places).singular
        return self.pick((
            f"Flight {self.r.randint(100, 9999)} to {self.pick(self.lx.cities)} leaves from gate "
            f"{self.r.randint(1, 60)}.",
            f"The train to {self.pick(self.lx.cities)} departs at {self.clock()}.",
            f"Take the {self.pick(ORDINALS[:5])} exit after the {place}.",
            f"The bus from {self.pick(self.lx.cities)} is {self.r.randint(5, 50)} minutes late.",
        ))  # fmt: skip

    def weather(self) -> str:
        return (
            f"{self.pick(WEEKDAYS)} will be {self.pick(WEATHER)} in {self.pick(self.lx.cities)} "
            f"with a high of {self.r.randint(20, 99)} degrees."
        )

    def phone_prompt(self) -> str:
        digit = self.r.randint(0, 9)
        return self.pick((
            f"Please enter your {self.pick(ENTRIES)} followed by the {self.pick(KEYS)}.",
            f"To {self.pick(ACTIONS)}, press {digit}.",
            f"For {self.pick(DEPARTMENTS)}, press {digit}.",
            f"Press {digit} for {self.pick(DEPARTMENTS)}, or press {self.r.randint(0, 9)} to "
            f"{self.pick(ACTIONS)}.",
            f"Please hold while we {self.pick(HOLD_REASONS)}.",
            f"Your estimated wait time is {self.r.randint(2, 45)} minutes.",
            f"The {self.pick(('person', 'party', 'extension'))} you are calling is "
            f"{self.pick(('not available', 'busy', 'on another line', 'away from the desk'))}.",
            f"The number you have dialed {self.pick(DIALED_PROBLEMS)}.",
            f"Your {self.pick(('payment', 'order', 'appointment', 'reservation', 'request'))} "
            f"has been {self.pick(STATUSES)}.",
            f"You entered {self.digits(3, 7)}. If this is correct, press {digit}.",
            f"Sorry, I did not understand. Please say {self.pick(('yes', 'no', 'agent'))} or "
            f"press {digit}.",
            f"Please call us back between {self.clock()} and {self.clock()}.",
            f"Your current balance is {self.r.randint(2, 5000)} dollars.",
            f"Dial {digit} to reach {self.pick(DEPARTMENTS)}.",
            f"Thank you for calling {self.pick(self.lx.surnames)} {self.pick(BUSINESSES)}.",
        ))  # fmt: skip

    def voicemail(self) -> str:
        count, digit = self.r.randint(2, 30), self.r.randint(0, 9)
        return self.pick((
            f"You have {count} new messages and {self.r.randint(2, 30)} saved messages.",
            f"{self.pick(ORDINALS[:9])} message received {self.pick(WEEKDAYS)} at "
            f"{self.clock()}.",
            f"Message from extension {self.digits(3, 4)}.",
            f"Message from phone number {self.digits(7, 10)}.",
            f"This mailbox belongs to {self.pick(self.lx.first_names)} "
            f"{self.pick(self.lx.surnames)}.",
            f"To forward this message to {self.pick(self.lx.first_names)}, press {digit}.",
            f"Your {self.pick(('greeting', 'password', 'name', 'message'))} has been "
            f"{self.pick(('saved', 'changed', 'erased', 'recorded'))}.",
        ))  # fmt: skip

    def spelling(self) -> str:
        letters = [chr(ord("A") + self.r.randint(0, 25)) for _ in range(self.r.randint(2, 4))]
        code = " ".join(letters)
        return self.pick((
            f"My code is {code} {self.digits(1, 3)}.",
            f"That is {letters[0]} as in {NATO[ord(letters[0]) - ord('A')]}.",
            f"The reference is {' '.join(self.r.sample(NATO, 3))} {self.digits(1, 2)}.",
            f"Spell it {code}.",
        ))  # fmt: skip

    def digit_string(self) -> str:
        return self.digits(2, 7) + "."


def article(phrase: str) -> str:
    """Fix "a apple" -> "an apple" for phrases starting with the article "a"."""
    words = phrase.split(" ")
    if words[0] == "a" and len(words) > 1 and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def join(*parts: str) -> str:
    """Join non-empty parts with single spaces."""
    return " ".join(part for part in parts if part)
