//! The `hashed-ngrams-v1` feature recipe: one pass over the normalized text yields hashed
//! character 3-, 4- and 5-grams and word 1- and 2-grams.
//!
//! Why these: character n-grams see through the spelling games attackers play on trigger words
//! (`ign0re`, `i g n o r e` leaves `ign`, `gno`…, misspellings share most grams) and work in
//! any script, since they run on UTF-8 bytes; word n-grams carry phrasing ("you are", "from
//! now"). Hashing into a fixed number of buckets keeps the model a flat array with no
//! vocabulary to ship, and makes the cost per byte constant: the last five bytes sit in one
//! register, each of the three grams ending at a byte is a mask of it hashed with one
//! multiply, plus at most one word step — about four table lookups per byte, whatever the text.
//!
//! The text is folded first: ASCII letters to lower case, every digit to `0` (numbers vary,
//! their shape does not), white space runs to one space. The recipe is versioned: changing any
//! of this (hash, folding, n-gram sizes) makes a new recipe name, because a model's weights are
//! only meaningful for the exact features it was trained on.

/// Multiplier of the FNV-1a 64-bit hash, used to mix bytes into n-gram hashes.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// Fibonacci hashing constant: spreads a 64-bit hash over the top `bits` bits.
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;
/// Seeds that keep word unigrams, word bigrams and character grams apart.
const WORD_SEED: u64 = 0x5745_4f52_4431_0001;
const BIGRAM_SEED: u64 = 0x5745_4f52_4432_0002;

#[inline]
fn mix(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
}

/// What a byte is to the recipe.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Space,
    /// ASCII letters and digits, and every byte of a non-ASCII character.
    Word,
    Other,
}

/// Per byte: its class and its folded form (letters lower-cased, digits to `0`). A table
/// rather than branches: the loop runs once per byte of every scanned text.
const TABLE: [(Class, u8); 256] = {
    let mut t = [(Class::Other, 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match b {
            b'A'..=b'Z' => (Class::Word, b + 32),
            b'a'..=b'z' => (Class::Word, b),
            b'0'..=b'9' => (Class::Word, b'0'),
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => (Class::Space, b' '),
            0x80..=0xff => (Class::Word, b),
            _ => (Class::Other, b),
        };
        i += 1;
    }
    t
};

/// Calls `emit` with the bucket (`0..1 << bits`) of every feature of `text`, in text order.
/// Returns the number of features emitted. `bits` must be in `1..=32`.
///
/// Always inlined: the caller's accumulator can then stay in registers instead of being
/// written through a pointer for every feature (half of the instructions per byte).
#[inline(always)]
pub fn for_each_bucket<F: FnMut(usize)>(text: &[u8], bits: u32, emit: F) -> usize {
    let mut s = State {
        shift: 64 - bits,
        emit,
        count: 0,
        reg: 0,
        pos: 0,
        word: FNV_OFFSET,
        word_len: 0,
        prev_word: None,
    };
    // Text starts and ends at a space so that grams see word edges.
    s.push(b' ');
    let mut in_space = true;
    for &b in text {
        let (class, f) = TABLE[usize::from(b)];
        match class {
            Class::Space => {
                s.end_word();
                if !in_space {
                    s.push(b' ');
                    in_space = true;
                }
            }
            Class::Word => {
                s.word = mix(s.word, f);
                s.word_len += 1;
                s.push(f);
                in_space = false;
            }
            Class::Other => {
                s.end_word();
                s.push(f);
                in_space = false;
            }
        }
    }
    s.end_word();
    if !in_space {
        s.push(b' ');
    }
    s.count
}

struct State<F> {
    shift: u32,
    emit: F,
    count: usize,
    /// The folded bytes so far, newest in the low byte (only the last five matter).
    reg: u64,
    pos: usize,
    word: u64,
    word_len: usize,
    prev_word: Option<u64>,
}

impl<F: FnMut(usize)> State<F> {
    #[inline(always)]
    fn out(&mut self, h: u64) {
        (self.emit)((h.wrapping_mul(SPREAD) >> self.shift) as usize);
        self.count += 1;
    }

    /// Appends one folded byte and emits the character grams ending at it. The last five bytes
    /// live in one register, so each gram is a mask of it and one multiply hashes it.
    #[inline(always)]
    fn push(&mut self, b: u8) {
        self.reg = (self.reg << 8) | u64::from(b);
        self.pos += 1;
        if self.pos >= 3 {
            self.out((self.reg & 0xff_ffff) | (3 << 56));
        }
        if self.pos >= 4 {
            self.out((self.reg & 0xffff_ffff) | (4 << 56));
        }
        if self.pos >= 5 {
            self.out((self.reg & 0xff_ffff_ffff) | (5 << 56));
        }
    }

    /// Ends the current word, if any: emits it and the bigram with the word before.
    #[inline(always)]
    fn end_word(&mut self) {
        if self.word_len == 0 {
            return;
        }
        let w = self.word;
        self.out(w ^ WORD_SEED);
        if let Some(p) = self.prev_word {
            self.out(p.rotate_left(17) ^ w ^ BIGRAM_SEED);
        }
        self.prev_word = Some(w);
        self.word = FNV_OFFSET;
        self.word_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(text: &str) -> Vec<usize> {
        let mut v = Vec::new();
        let n = for_each_bucket(text.as_bytes(), 16, |b| v.push(b));
        assert_eq!(n, v.len());
        v
    }

    #[test]
    fn case_digits_and_white_space_are_folded() {
        assert_eq!(buckets("Ignore  PIN 1234"), buckets("ignore pin 9876"));
        assert_eq!(buckets("a\t\nb"), buckets("a b"));
        assert_ne!(buckets("ignore"), buckets("ignora"));
    }

    #[test]
    fn counts_grams_and_words() {
        // " ab " → 4 bytes: grams of 3 end at bytes 3 and 4 (2), of 4 at byte 4 (1); one word.
        assert_eq!(buckets("ab").len(), 2 + 1 + 1);
        // Empty text: only the leading space, too short for any gram.
        assert!(buckets("").is_empty());
        // Two words: a bigram too.
        let two = buckets("ab cd");
        assert_eq!(two.len(), (7 - 2) + (7 - 3) + (7 - 4) + 2 + 1);
    }

    #[test]
    fn buckets_stay_in_range_for_any_bytes() {
        let text: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        for_each_bucket(&text, 10, |b| assert!(b < 1024));
    }
}
