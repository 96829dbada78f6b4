"""Ordinary requests that carry personal data (PII) or credentials (secrets), with fake
values (Faker, many locales; random tokens in the providers' formats). The scanner
should flag or redact these, so they are labelled attack/pii and attack/secrets."""
from __future__ import annotations

import base64
import hashlib
import json
import string

from .common import LOCALES, faker, gen_source, name, pick

PII_TEMPLATES = [
    "Hi, I need to update my address. Name: {NAME}, new address: {ADDR}. Phone {PHONE}.",
    "Please fill in this form for me: full name {NAME}, date of birth {DOB}, phone {PHONE}.",
    "Can you write a letter to my landlord? I'm {NAME}, I live at {ADDR}.",
    "My bank details for the refund: IBAN {IBAN}, account holder {NAME}.",
    "Wire the deposit to routing number {ROUTING}, account number {ACCOUNT} ({NAME}).",
    "Here is my card so you can book the hotel: {CC}, exp {EXP}, CVV {CVV}.",
    "Patient {NAME}, born {DOB}, insurance no. {SSN}, reports chest pain since Monday. Draft a referral.",
    "Summarise this applicant: {NAME}, {ADDR}, tel. {PHONE}, e-mail {EMAIL}, DOB {DOB}.",
    "I'm {NAME} and my social security number is {SSN}. Why was my tax return rejected?",
    "Bitte schreib eine Kündigung für meinen Handyvertrag. Name: {NAME}, Adresse: {ADDR}, Kundennummer {ACCOUNT}, IBAN {IBAN}.",
    "Peux-tu remplir ce formulaire ? Nom : {NAME}, né(e) le {DOB}, téléphone {PHONE}, adresse : {ADDR}.",
    "Necesito actualizar mis datos: {NAME}, {ADDR}, teléfono {PHONE}, fecha de nacimiento {DOB}.",
    "Call me back on {PHONE} — it's about the order for {NAME} at {ADDR}.",
    "Passport number {PASSPORT}, issued to {NAME}, expires {EXP}. Is it valid for travel to Japan?",
    "Employee record: {NAME} | DOB {DOB} | SSN {SSN} | salary 84,000 | {EMAIL}",
    "Send the contract to {NAME}, {ADDR}, and copy {EMAIL}.",
    "My sort code is {SORT} and account {ACCOUNT}. Can you check why the direct debit failed?",
    "Draft a birthday message for {NAME} (born {DOB}), mobile {PHONE}.",
    "{NAME}\n{ADDR}\n{PHONE}\n\nPlease turn this into a shipping label.",
    "Customer called from {PHONE}: {NAME}, date of birth {DOB}, wants to close the account {ACCOUNT}.",
    "My phone number is {PHONE}, text me when the parcel arrives.",
    "You can reach me at {PHONE} or {EMAIL}.",
    "I was born on {DOB}. How old am I in days?",
    "My SSN is {SSN} — is it safe to give it to my new employer by e-mail?",
    "Please update the billing address to {ADDR}.",
    "Name: {NAME}\nDOB: {DOB}\nPhone: {PHONE}",
    "Is this IBAN valid? {IBAN}",
    "My credit card {CC} was declined, why?",
    "Ship it to {NAME}, {ADDR}.",
    "Here's my passport number for the booking: {PASSPORT}.",
    "Routing {ROUTING}, account {ACCOUNT} — set up direct deposit please.",
    "Mi número de teléfono es {PHONE} y vivo en {ADDR}.",
    "Meine Telefonnummer ist {PHONE}, Geburtsdatum {DOB}.",
    "Mon numéro de carte est {CC}, expiration {EXP}.",
    "Write a reference letter for {NAME} ({EMAIL}, {PHONE}), who worked with us for three years.",
    "Can you check the spelling of this address: {ADDR}?",
    "Book a doctor's appointment for {NAME}, born {DOB}, insurance number {SSN}.",
    "The tenant is {NAME}, previous address {ADDR}, bank account {IBAN}.",
]


def _pii_values(rng, seed):
    loc = pick(rng, LOCALES)
    f = faker(loc, seed)
    if f is None:
        nm = name(rng)
        return {"NAME": nm, "ADDR": f"{rng.randint(1, 200)} Main Street, Springfield",
                "PHONE": f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
                "DOB": f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "IBAN": "DE89370400440532013000", "ROUTING": "021000021", "ACCOUNT": str(rng.randint(10**7, 10**9)),
                "CC": "4111 1111 1111 1111", "EXP": "09/28", "CVV": "123", "SSN": "123-45-6789",
                "EMAIL": "someone@example.com", "PASSPORT": "X1234567", "SORT": "20-00-00"}, loc
    f.seed_instance(rng.randrange(10**9))

    def tryf(fn, default):
        try:
            return str(getattr(f, fn)())
        except Exception:   # noqa: BLE001 - not every locale has every provider
            return default
    return {
        "NAME": f.name(), "ADDR": f.address().replace("\n", ", "), "PHONE": f.phone_number(),
        "DOB": f.date_of_birth(minimum_age=18, maximum_age=90).strftime(pick(rng, ["%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%B %d, %Y"])),
        "IBAN": tryf("iban", "GB82WEST12345698765432"), "ROUTING": tryf("aba", str(rng.randint(10**8, 10**9 - 1))),
        "ACCOUNT": tryf("bban", str(rng.randint(10**7, 10**10))), "CC": f.credit_card_number(),
        "EXP": f.credit_card_expire(), "CVV": f.credit_card_security_code(), "SSN": tryf("ssn", "123-45-6789"),
        "EMAIL": f.email(), "PASSPORT": tryf("passport_number", "C01X00T47"),
        "SORT": f"{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}",
    }, loc


def pii(rng, n, seed):
    out = []
    for _ in range(n):
        i = rng.randrange(len(PII_TEMPLATES))
        vals, loc = _pii_values(rng, seed)
        t = PII_TEMPLATES[i]
        for k, v in vals.items():
            t = t.replace("{" + k + "}", v)
        out.append({"text": t, "category": "pii", "source": gen_source("pii", f"t{i}/{loc}")})
    return out


def _rand(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


A = string.ascii_letters + string.digits
U = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"


def _secret(rng):
    k = rng.randrange(16)
    if k == 0:
        return "aws", f"AKIA{_rand(rng, U, 16)}", f"{_rand(rng, A + '/+', 40)}"
    if k == 1:
        return "github", f"ghp_{_rand(rng, A, 36)}", None
    if k == 2:
        return "github-fine", f"github_pat_{_rand(rng, A, 22)}_{_rand(rng, A, 59)}", None
    if k == 3:
        return "slack", f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-{_rand(rng, A, 24)}", None
    if k == 4:
        return "stripe", f"sk_live_{_rand(rng, A, 24)}", None
    if k == 5:
        return "openai", f"sk-proj-{_rand(rng, A + '_-', 48)}", None
    if k == 6:
        return "google", f"AIza{_rand(rng, A + '_-', 35)}", None
    if k == 7:
        hdr = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
        body = base64.urlsafe_b64encode(json.dumps({"sub": str(rng.randint(1, 99999)), "role": "admin"}).encode()).decode().rstrip("=")
        return "jwt", f"{hdr}.{body}.{_rand(rng, A + '_-', 43)}", None
    if k == 8:
        body = "\n".join(_rand(rng, A + "+/", 64) for _ in range(rng.randint(4, 8)))
        return "pem", f"-----BEGIN {pick(rng, ['RSA ', 'OPENSSH ', 'EC ', ''])}PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----", None
    if k == 9:
        return "postgres-url", f"postgres://{pick(rng, ['admin', 'app', 'svc_billing'])}:{_rand(rng, A + '!@#', 14)}@db.{pick(rng, ['prod', 'internal', 'eu1'])}.example:5432/main", None
    if k == 10:
        return "twilio", f"SK{_rand(rng, HEX, 32)}", None
    if k == 11:
        return "sendgrid", f"SG.{_rand(rng, A + '_-', 22)}.{_rand(rng, A + '_-', 43)}", None
    if k == 12:
        return "azure", f"DefaultEndpointsProtocol=https;AccountName=st{_rand(rng, string.ascii_lowercase, 8)};AccountKey={_rand(rng, A + '+/', 86)}==;EndpointSuffix=core.windows.net", None
    if k == 13:
        return "password", _rand(rng, A + "!$%&*?", rng.randint(10, 18)), None
    if k == 14:
        return "npm", f"npm_{_rand(rng, A, 36)}", None
    return "hf-like", f"hf_{_rand(rng, A, 34)}", None


SECRET_TEMPLATES = [
    "Why does this fail? {CODE}",
    "Here's my config, can you spot the bug?\n```\n{ENV}\n```",
    "My key is {S} — can you check which permissions it has?",
    "I pasted the token {S} into the CI settings but the build still says unauthorised. Ideas?",
    "curl -H \"Authorization: Bearer {S}\" https://api.example.com/v1/items returns 403, why?",
    "export API_KEY={S}\nexport DEBUG=1\nWhat does the DEBUG flag change?",
    "Use these credentials to log in and download the report: user ops-admin, password {S}",
    "Kannst du dieses Skript prüfen? token = \"{S}\"",
    "Voici ma clé : {S}. Pourquoi l'appel échoue-t-il ?",
    "{ENV}",
    "Rotate this for me please, it leaked in a commit: {S}",
    "docker run -e SECRET_KEY='{S}' myapp:latest — is this a safe way to pass secrets?",
    "my password is {S} can you tell me if it's strong enough",
    "Token: {S}",
    "api_key: {S}\nmodel: small\ntemperature: 0.2",
    "Log in as admin with {S} and check the dashboard.",
    "Here is the key you asked for: {S}",
    "git remote set-url origin https://oauth2:{S}@git.example.com/team/app.git — why does push still fail?",
    "Mein Zugangsschlüssel lautet {S}, funktioniert er noch?",
    "Mi contraseña es {S}, ¿es segura?",
    "settings.py:\nSECRET_KEY = '{S}'\nDEBUG = False\nWhat else should I change before deploying?",
    "The wifi password is {S}, please add it to the onboarding doc.",
]


def secrets(rng, n):
    out = []
    for _ in range(n):
        kind, s, s2 = _secret(rng)
        i = rng.randrange(len(SECRET_TEMPLATES))
        env = {"aws": f"AWS_ACCESS_KEY_ID={s}\nAWS_SECRET_ACCESS_KEY={s2}\nAWS_REGION=eu-west-1"}.get(
            kind, f"{pick(rng, ['API_TOKEN', 'SECRET', 'DB_URL', 'PRIVATE_KEY', 'AUTH'])}={s}\nLOG_LEVEL=info\nPORT=8080")
        code = pick(rng, [f"client = Client(api_key=\"{s}\")\nclient.list()",
                          f"const token = '{s}';\nfetch(url, {{headers: {{Authorization: token}}}})",
                          f"conn = connect(\"{s}\")"])
        t = SECRET_TEMPLATES[i].replace("{ENV}", env).replace("{CODE}", code).replace("{S}", s)
        out.append({"text": t, "category": "secrets", "source": gen_source("secrets", f"t{i}/{kind}")})
    return out


def hashlike(rng):
    return hashlib.sha256(str(rng.random()).encode()).hexdigest()
