//! Exact comparison and conversion of JSON numbers, which keep their decimal text.

use std::cmp::Ordering;

use serde_json::Number;

/// Compare two JSON numbers exactly, without going through f64.
pub fn compare(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    match (Decimal::parse(&a.to_string()), Decimal::parse(&b.to_string())) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(Ordering::Equal),
    }
}

/// A decimal as sign, digits and exponent: value = ±0.DIGITS × 10^exp, digits without
/// leading or trailing zeros.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
}

impl Decimal {
    fn parse(s: &str) -> Option<Decimal> {
        let (negative, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (mantissa, e) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
            None => (s, 0),
        };
        let (int, frac) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut digits: Vec<u8> = Vec::with_capacity(int.len() + frac.len());
        for c in int.bytes().chain(frac.bytes()) {
            if !c.is_ascii_digit() {
                return None;
            }
            digits.push(c - b'0');
        }
        let mut exp = int.len() as i64 + e;
        let lead = digits.iter().take_while(|d| **d == 0).count();
        digits.drain(..lead);
        exp -= lead as i64;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Decimal { negative: false, digits, exp: 0 });
        }
        Some(Decimal { negative, digits, exp })
    }

    fn cmp_abs(&self, other: &Decimal) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        self.exp.cmp(&other.exp).then_with(|| self.digits.cmp(&other.digits))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_abs(other),
            (true, true) => other.cmp_abs(self),
        }
    }
}

/// Parse decimal text into an exact JSON number (`None` if it is not a number).
pub fn parse_exact(s: &str) -> Option<Number> {
    let t = s.trim();
    Decimal::parse(t)?;
    serde_json::from_str::<Number>(t.strip_prefix('+').unwrap_or(t)).ok()
}

/// Whether a JSON number is integral (`3`, `3.0`, `3e2`), judged exactly.
pub fn is_integral(n: &Number) -> bool {
    if n.is_i64() || n.is_u64() {
        return true;
    }
    match Decimal::parse(&n.to_string()) {
        Some(d) => d.digits.is_empty() || d.exp >= d.digits.len() as i64,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Number {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn compares_beyond_f64() {
        assert_eq!(compare(&n("0.1000000000000000000000000000001"), &n("0.1")), Ordering::Greater);
        assert_eq!(compare(&n("-5"), &n("-4.99999999999999999999")), Ordering::Less);
        assert_eq!(compare(&n("1e3"), &n("1000")), Ordering::Equal);
        assert_eq!(compare(&n("99999999999999999999"), &n("100000000000000000000")), Ordering::Less);
    }

    #[test]
    fn integral_and_exact_parse() {
        assert!(is_integral(&n("12345678901234567890123")));
        assert!(is_integral(&n("2.0")));
        assert!(!is_integral(&n("2.5")));
        assert_eq!(
            parse_exact(" 123.450000000000000000000000001 ").unwrap().to_string(),
            "123.450000000000000000000000001"
        );
        assert!(parse_exact("12a").is_none());
    }
}
