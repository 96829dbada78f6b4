"""Shared helpers for the seeded text generators."""
from __future__ import annotations

import random
import re

try:
    from faker import Faker
except ImportError:  # the build venv installs it; keep generators importable without it
    Faker = None

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "pl_PL",
           "sv_SE", "en_IN", "ja_JP", "en_AU", "de_CH", "fr_CA", "tr_TR"]

_FAKERS = {}


def faker(locale, seed):
    if Faker is None:
        return None
    k = (locale, seed)
    if k not in _FAKERS:
        f = Faker(locale)
        f.seed_instance(seed)
        _FAKERS[k] = f
    return _FAKERS[k]


FIRST = ["Anna", "Ben", "Carla", "David", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas",
         "Kemal", "Lena", "Marta", "Nils", "Olga", "Pierre", "Quinn", "Rosa", "Sanjay", "Tomasz",
         "Ute", "Victor", "Wen", "Ximena", "Yusuf", "Zoe", "Priya", "Mateo", "Aiko", "Liam"]
LAST = ["Schmidt", "Garcia", "Rossi", "Novak", "Kowalski", "Martin", "Silva", "Jensen", "Tanaka",
        "Okafor", "Dubois", "Müller", "Smith", "Ivanova", "Haddad", "Nguyen", "Brown", "Larsen"]
COMPANIES = ["Northwind", "Contoso", "Globex", "Initech", "Umbrella Logistics", "Acme Corp",
             "Blue Harbor Bank", "Fjord Analytics", "Helios Energy", "Kestrel Travel",
             "Lumen Health", "Orbit Retail", "Pinecone Studio", "Quarry Labs", "Redwood Insurance"]
PRODUCTS = ["wireless earbuds", "standing desk", "coffee grinder", "hiking boots", "air purifier",
            "mechanical keyboard", "travel backpack", "smart thermostat", "e-reader", "blender",
            "office chair", "robot vacuum", "yoga mat", "electric kettle", "monitor arm"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "corp.example"]
ATTACKER_HOSTS = ["collect-stats.net", "img-cdn-cache.com", "telemetry-sync.io", "pixel.trk-analytics.org",
                  "attacker.example", "files-upload.cc", "api.metricsbeacon.com", "log.evil-proxy.net",
                  "webhook.site-cache.app", "cdn-static-assets.xyz", "bin.paste-drop.dev", "r.shortlnk.co"]


def pick(rng, xs):
    return xs[rng.randrange(len(xs))]


def name(rng):
    return f"{pick(rng, FIRST)} {pick(rng, LAST)}"


def email_addr(rng, nm=None):
    nm = nm or name(rng)
    return re.sub(r"[^a-z.]", "", nm.lower().replace(" ", ".").replace("ü", "ue")) + "@" + pick(rng, DOMAINS)


def spaced(word):
    return " ".join(word)


LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}


def leet(word, rng, p=0.6):
    return "".join(LEET.get(ch.lower(), ch) if rng.random() < p else ch for ch in word)


def misspell(word, rng):
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    op = rng.randrange(4)
    if op == 0:   # swap
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == 1:   # double
        return word[:i] + word[i] + word[i:]
    if op == 2:   # drop
        return word[:i] + word[i + 1:]
    return word[:i] + "-" + word[i:]


ZW = ["\u200b", "\u200c", "\u200d", "\u2060"]


def zero_width(word, rng):
    return "".join(ch + (pick(rng, ZW) if rng.random() < 0.5 else "") for ch in word)


HOMO = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "i": "і", "x": "х", "y": "у"}


def homoglyph(word, rng):
    return "".join(HOMO.get(ch, ch) if rng.random() < 0.5 else ch for ch in word)


def obfuscate_triggers(text, rng, p=0.5):
    """Obfuscate classic trigger words (ignore, instructions, system, ...) in text."""
    triggers = ["ignore", "Ignore", "IGNORE", "instructions", "instruction", "previous", "system",
                "prompt", "disregard", "forget", "override", "secret", "password", "reveal"]

    def rep(m):
        w = m.group(0)
        if rng.random() > p:
            return w
        f = rng.randrange(5)
        return [spaced, lambda s: leet(s, rng), lambda s: misspell(s, rng),
                lambda s: zero_width(s, rng), lambda s: homoglyph(s, rng)][f](w)
    return re.sub(r"\b(" + "|".join(triggers) + r")\b", rep, text)


def gen_source(generator, template):
    return f"generated:{generator}#{template}"
