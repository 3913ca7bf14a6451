//! The canonical report stream (v1) that every engine must reproduce on the same flow:
//! one line per trade (`T taker maker price qty`) and one per refused cancel or amend
//! (`X order`), in the order the engine produced them. Its SHA-256 is compared across
//! engines; a mismatch means an adapter (or an engine) does not do what the other does.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// One line of the report, as collected inside the timed loop (rendering to text
/// and hashing happen afterwards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    Trade {
        taker: u64,
        maker: u64,
        price: i64,
        qty: i64,
    },
    /// A cancel or amend of an order that is not live.
    Refused { order: u64 },
}

impl Line {
    fn write_to(&self, out: &mut String) {
        // writing into a String cannot fail
        let _ = match *self {
            Line::Trade {
                taker,
                maker,
                price,
                qty,
            } => writeln!(out, "T {taker} {maker} {price} {qty}"),
            Line::Refused { order } => writeln!(out, "X {order}"),
        };
    }

    /// The line as it appears in the report, without its newline.
    pub fn text(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s);
        s.pop();
        s
    }
}

/// Trades and refusals in a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub trades: usize,
    pub refusals: usize,
}

pub fn tally(lines: &[Line]) -> Tally {
    let trades = lines
        .iter()
        .filter(|l| matches!(l, Line::Trade { .. }))
        .count();
    Tally {
        trades,
        refusals: lines.len() - trades,
    }
}

/// The report text: every line with its newline.
pub fn text(lines: &[Line]) -> String {
    let mut text = String::with_capacity(lines.len() * 32);
    for line in lines {
        line.write_to(&mut text);
    }
    text
}

/// Lowercase hex SHA-256 of the report text.
pub fn hash(lines: &[Line]) -> String {
    Sha256::digest(text(lines).as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// Index of the first line where two reports differ (one may be a prefix of the other).
pub fn first_difference(a: &[Line], b: &[Line]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_the_documented_format() {
        let lines = [
            Line::Trade {
                taker: 7,
                maker: 3,
                price: 2_010_000,
                qty: 4,
            },
            Line::Refused { order: 9 },
        ];
        assert_eq!(lines[0].text(), "T 7 3 2010000 4");
        assert_eq!(lines[1].text(), "X 9");
        assert_eq!(text(&lines), "T 7 3 2010000 4\nX 9\n");
        let expected = Sha256::digest(b"T 7 3 2010000 4\nX 9\n");
        let expected: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hash(&lines), expected);
        assert_eq!(
            tally(&lines),
            Tally {
                trades: 1,
                refusals: 1
            }
        );
    }

    #[test]
    fn the_first_difference_is_found() {
        let a = [Line::Refused { order: 1 }, Line::Refused { order: 2 }];
        let b = [Line::Refused { order: 1 }, Line::Refused { order: 3 }];
        assert_eq!(first_difference(&a, &b), Some(1));
        assert_eq!(first_difference(&a, &a[..1]), Some(1));
        assert_eq!(first_difference(&a, &a), None);
    }
}
