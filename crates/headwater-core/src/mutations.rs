//! Inputs for the parsers' robustness tests (here and in other crates,
//! with the `mutations` feature): valid examples mutated at
//! random (bytes dropped, replaced, cut off, or pieces that matter to the
//! format spliced in). Deterministic from a seed, so a failing case is
//! replayed by its number.

/// A small xorshift generator: no dependency, the same cases on every run.
pub struct Mutator {
    state: u64,
}

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator { state: seed.max(1) }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to six mutations of `example`, with `pieces` as the spliced-in
    /// fragments (a format's delimiters, quotes, extreme numbers).
    pub fn mutate(&mut self, example: &[u8], pieces: &[&[u8]]) -> Vec<u8> {
        let mut bytes = example.to_vec();
        for _ in 0..1 + self.below(6) {
            let at = self.below(bytes.len() + 1);
            match self.below(5) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 | 2 if !pieces.is_empty() => {
                    let piece = pieces[self.below(pieces.len())];
                    bytes.splice(at..at, piece.iter().copied());
                }
                3 if at < bytes.len() => bytes[at] = self.next() as u8,
                4 => bytes.truncate(at),
                _ => {}
            }
        }
        bytes
    }

    /// [`Mutator::mutate`] kept to valid UTF-8 (for parsers that take `&str`).
    pub fn mutate_text(&mut self, example: &str, pieces: &[&str]) -> String {
        let pieces: Vec<&[u8]> = pieces.iter().map(|p| p.as_bytes()).collect();
        String::from_utf8_lossy(&self.mutate(example.as_bytes(), &pieces)).into_owned()
    }
}
