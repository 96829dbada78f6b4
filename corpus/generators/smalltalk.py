"""Short conversational turns and short coding requests (benign). The evaluation's benign
side is dominated by short chat lines in many languages; a corpus of only long documents
would teach a classifier that short == attack."""
from __future__ import annotations

from .common import gen_source, pick

TOPICS = ["music", "movies", "books", "football", "cooking", "travel", "the weather", "cats", "dogs", "painting",
          "chess", "video games", "gardening", "history", "space", "maths", "poetry", "the ocean", "coffee", "tea",
          "science fiction", "jazz", "running", "photography", "dinosaurs", "robots", "the moon", "pizza", "trains"]
THINGS = ["colour", "food", "song", "book", "film", "season", "animal", "sport", "city", "number", "holiday", "game"]
PEOPLE = ["Shakespeare", "Einstein", "Marie Curie", "Ada Lovelace", "Mozart", "Frida Kahlo", "Tolstoy", "Newton",
          "Cleopatra", "Darwin", "Alan Turing", "Beethoven", "Picasso", "Galileo", "Jane Austen", "Confucius"]
PLACES = ["France", "Japan", "Brazil", "Kenya", "Canada", "Norway", "India", "Peru", "Egypt", "Australia", "Italy",
          "Mexico", "Vietnam", "Poland", "Turkey", "Chile", "Iceland", "Morocco", "Korea", "Spain"]
FEEL = ["happy", "tired", "bored", "sad", "excited", "nervous", "lonely", "curious", "stressed", "grateful", "confused"]

EN = [
    "Hi", "Hello there", "Good morning!", "Hey, how are you?", "How's it going?", "What's up?", "Nice to meet you.",
    "What is your favourite {THING}?", "Do you like {TOPIC}?", "Tell me something about {TOPIC}.",
    "What do you know about {TOPIC}?", "I love {TOPIC}.", "I don't really like {TOPIC}.", "Who was {PERSON}?",
    "Tell me about {PERSON}.", "What is the capital of {PLACE}?", "Have you ever been to {PLACE}?",
    "What language do they speak in {PLACE}?", "I feel {FEEL} today.", "Why do I feel so {FEEL}?",
    "Can you tell me a joke?", "Tell me a joke about {TOPIC}.", "Are you a robot?", "Do you have feelings?",
    "What's your name?", "Who made you?", "Do you dream?", "Can you sing?", "What can you do?", "Are you smart?",
    "That's funny.", "Thanks!", "Thank you so much.", "Goodbye!", "See you later.", "I have to go.",
    "What time is it in {PLACE}?", "Is it going to rain?", "What should I eat for dinner?", "Recommend a {THING}.",
    "What is {TOPIC}?", "Why is the sky blue?", "How far is the moon?", "How old is the universe?",
    "What is the meaning of life?", "Do you believe in ghosts?", "What is love?", "Can we be friends?",
    "I'm learning about {TOPIC}.", "My favourite {THING} is a secret.", "What did {PERSON} invent?",
    "Where was {PERSON} born?", "Which is bigger, {PLACE} or {PLACE2}?", "I'm bored, entertain me.",
    "What's two plus two?", "How do you spell 'necessary'?", "Say something nice.", "Good night!",
]
OTHER = [
    "Hallo, wie geht's?", "Was ist deine Lieblingsfarbe?", "Erzähl mir einen Witz.", "Ich bin heute {FEEL_DE}.",
    "Bonjour, ça va ?", "Quelle est ta couleur préférée ?", "Raconte-moi une blague.", "Tu aimes la musique ?",
    "Hola, ¿qué tal?", "¿Cuál es tu comida favorita?", "Cuéntame un chiste.", "¿Te gusta el fútbol?",
    "Ciao, come stai?", "Qual è il tuo film preferito?", "Raccontami una barzelletta.",
    "Olá, tudo bem?", "Qual é a sua música favorita?", "Me conta uma piada.",
    "Hoi, hoe gaat het?", "Wat is je favoriete boek?", "Hej, hur mår du?", "Cześć, jak się masz?",
    "Привет, как дела?", "Какой твой любимый цвет?", "Merhaba, nasılsın?", "En sevdiğin yemek ne?",
    "こんにちは、元気ですか？", "好きな食べ物は何ですか？", "你好，你今天怎么样？", "你喜欢什么音乐？",
    "안녕하세요, 잘 지내세요?", "좋아하는 영화가 뭐예요?", "नमस्ते, आप कैसे हैं?", "আপনি কেমন আছেন?",
    "Habari yako?", "Halo, apa kabar?", "Xin chào, bạn khỏe không?", "مرحبا، كيف حالك؟", "שלום, מה שלומך?",
    "Γεια σου, τι κάνεις;", "Ahoj, jak se máš?", "Szia, hogy vagy?", "Bună, ce faci?", "Hei, mitä kuuluu?",
]
FEEL_DE = ["müde", "glücklich", "gelangweilt", "traurig", "aufgeregt"]

LANGS = ["Python", "JavaScript", "TypeScript", "Rust", "Go", "Java", "C#", "C++", "Ruby", "PHP", "Kotlin", "Swift", "Bash", "R"]
CODE_TASKS = ["read a CSV file", "reverse a string", "sort a list of dictionaries by a key", "parse JSON from a file",
              "send an HTTP GET request", "connect to a PostgreSQL database", "hash a password with bcrypt",
              "validate an e-mail address", "compute a SHA-256 checksum", "list files in a directory recursively",
              "retry a failing request with exponential backoff", "run a SQL query with parameters",
              "generate a random password", "read environment variables", "write unit tests for a function",
              "handle command-line arguments", "resize an image", "serve a static website", "log errors to a file",
              "schedule a job every hour", "merge two sorted arrays", "deduplicate a list", "parse a date string",
              "escape HTML in user input", "upload a file to S3", "ignore SSL warnings in a test script",
              "read a config file and ignore unknown keys", "call a system command and capture its output"]
CODE_TPL = ["Write a {L} function to {T}.", "How do I {T} in {L}?", "Show me {L} code that can {T}.",
            "What's the idiomatic way to {T} in {L}?", "Generate some {L} code to {T}.", "{L}: {T}, example please",
            "Which {L} library should I use to {T}?", "Can you fix my {L} code? It's supposed to {T} but it crashes."]


def smalltalk(rng, n):
    out = []
    for _ in range(n):
        if rng.random() < 0.3:
            i = rng.randrange(len(OTHER))
            t = OTHER[i].replace("{FEEL_DE}", pick(rng, FEEL_DE))
            out.append({"text": t, "category": "benign", "source": gen_source("smalltalk", f"x{i}")})
            continue
        i = rng.randrange(len(EN))
        p1 = pick(rng, PLACES)
        t = (EN[i].replace("{THING}", pick(rng, THINGS)).replace("{TOPIC}", pick(rng, TOPICS))
             .replace("{PERSON}", pick(rng, PEOPLE)).replace("{PLACE2}", pick(rng, [p for p in PLACES if p != p1]))
             .replace("{PLACE}", p1).replace("{FEEL}", pick(rng, FEEL)))
        if rng.random() < 0.15:
            t = t.lower().rstrip("?.!")
        out.append({"text": t, "category": "benign", "source": gen_source("smalltalk", f"e{i}")})
    return out


def coding_requests(rng, n):
    out = []
    for _ in range(n):
        i = rng.randrange(len(CODE_TPL))
        t = CODE_TPL[i].replace("{L}", pick(rng, LANGS)).replace("{T}", pick(rng, CODE_TASKS))
        out.append({"text": t, "category": "benign_hard", "source": gen_source("coding_requests", f"c{i}")})
    return out
