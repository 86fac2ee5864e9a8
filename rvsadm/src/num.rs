//! The C library's number and address parsers that ipvsadm relies on, with their exact
//! acceptance rules: `strtol(s, &end, 10)` as ipvsadm's `string_to_number` uses it, and
//! glibc's `inet_aton` (which takes `10.1`, `0x0a.0.0.1`, `167772161` and octal parts).

use std::net::Ipv4Addr;

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `strtol(s, &end, 10)` accepted only when it consumed the whole string: leading
/// whitespace, an optional sign, at least one digit. `None` for anything else or for a
/// value that overflows a 64-bit `long` (`ERANGE`).
pub fn strtol10(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let negative = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut value: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        let d = i64::from(b[i] - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
        i += 1;
    }
    (i > start && i == b.len()).then_some(value)
}

/// ipvsadm's `string_to_number(s, min, max)`: the number if it parses and is in range.
pub fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    strtol10(s).filter(|n| (min..=max).contains(n))
}

/// `strtoul(s, &end, 0)` on a string that starts with a digit: a C integer literal
/// (decimal, `0` octal, `0x` hex); returns the value (saturated at `u64::MAX` like
/// `ULONG_MAX` with `ERANGE`) and the number of bytes used.
fn strtoul0(b: &[u8]) -> (u64, usize, bool) {
    let (base, mut i) = if b.len() >= 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
        // "0x" followed by no hex digit parses as the "0" alone.
        if b.get(2).is_some_and(|c| c.is_ascii_hexdigit()) {
            (16, 2)
        } else {
            return (0, 1, false);
        }
    } else if b.first() == Some(&b'0') {
        (8, 1)
    } else {
        (10, 0)
    };
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(&c) = b.get(i) {
        let d = match c {
            b'0'..=b'9' => u64::from(c - b'0'),
            b'a'..=b'f' => u64::from(c - b'a' + 10),
            b'A'..=b'F' => u64::from(c - b'A' + 10),
            _ => break,
        };
        if d >= base {
            break;
        }
        match value.checked_mul(base).and_then(|v| v.checked_add(d)) {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    (if overflow { u64::MAX } else { value }, i, overflow)
}

/// glibc's `inet_aton`: `a.b.c.d`, `a.b.c` (c is 16 bits), `a.b` (b is 24 bits) or `a`
/// (32 bits), each part a C integer literal; anything after the address must start with
/// whitespace.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut parts: Vec<u32> = Vec::with_capacity(3);
    let mut i = 0;
    let val: u64;
    loop {
        if !b.get(i).is_some_and(|c| c.is_ascii_digit()) {
            return None;
        }
        let (v, used, overflow) = strtoul0(&b[i..]);
        if overflow || v > 0xffff_ffff {
            return None;
        }
        i += used;
        if b.get(i) == Some(&b'.') {
            if parts.len() > 2 || v > 0xff {
                return None;
            }
            parts.push(v as u32);
            i += 1;
        } else {
            val = v;
            break;
        }
    }
    if let Some(&c) = b.get(i)
        && !(c.is_ascii() && is_c_space(c))
    {
        return None;
    }
    const MAX: [u64; 4] = [0xffff_ffff, 0xff_ffff, 0xffff, 0xff];
    if val > MAX[parts.len()] {
        return None;
    }
    let mut word = val as u32;
    for (k, p) in parts.iter().enumerate() {
        word |= p << (24 - 8 * k);
    }
    Some(Ipv4Addr::from(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_like_c() {
        assert_eq!(strtol10("80"), Some(80));
        assert_eq!(strtol10(" 5"), Some(5));
        assert_eq!(strtol10("+7"), Some(7));
        assert_eq!(strtol10("010"), Some(10));
        assert_eq!(strtol10("-1"), Some(-1));
        assert_eq!(strtol10("0x10"), None);
        assert_eq!(strtol10("1x"), None);
        assert_eq!(strtol10(""), None);
        assert_eq!(strtol10(" "), None);
        assert_eq!(strtol10("-"), None);
        assert_eq!(strtol10("5 "), None);
        assert_eq!(strtol10("99999999999999999999"), None);
        assert_eq!(string_to_number("65536", 0, 65535), None);
        assert_eq!(
            string_to_number("2147483647", 0, i64::from(i32::MAX)),
            Some(2147483647)
        );
    }

    #[test]
    fn inet_aton_like_glibc() {
        let a = |s: &str| inet_aton(s).map(|a| a.to_string());
        assert_eq!(a("198.18.0.10").as_deref(), Some("198.18.0.10"));
        assert_eq!(a("198.18.1").as_deref(), Some("198.18.0.1"));
        assert_eq!(a("10.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("0xc6120020").as_deref(), Some("198.18.0.32"));
        assert_eq!(a("3323068449").as_deref(), Some("198.18.0.33"));
        assert_eq!(a("010.0.0.1").as_deref(), Some("8.0.0.1"));
        assert_eq!(a("198.18.0.37 ").as_deref(), Some("198.18.0.37"));
        assert_eq!(a("198.18.0.37 junk").as_deref(), Some("198.18.0.37"));
        assert_eq!(a("198.18.0.300"), None);
        assert_eq!(a("08.0.0.1"), None);
        assert_eq!(a("0x.0.0.1"), None);
        assert_eq!(a("1.2.3.4.5"), None);
        assert_eq!(a("1.2.3."), None);
        assert_eq!(a(""), None);
        assert_eq!(a("host"), None);
        assert_eq!(a("4294967296"), None);
        assert_eq!(a("1.16777216"), None);
        assert_eq!(a("24").as_deref(), Some("0.0.0.24"));
        assert_eq!(a("0").as_deref(), Some("0.0.0.0"));
    }
}
