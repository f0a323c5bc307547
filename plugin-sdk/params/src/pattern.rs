//! Parameter path patterns, the addressing language of `device` reads and `declare`.
//!
//! `Device.WiFi.SSID.*.SSID` (every instance), `Device.WiFi.SSID.[SSID:guest].Enable` (the
//! instances whose `SSID` is `guest`, a GenieACS alias), `Device.WiFi.` (an object). The host and
//! the test harness both parse and match with this module, so a plugin behaves the same in a unit
//! test and on a server.

use std::fmt;

/// One step of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A literal name or instance number.
    Name(String),
    /// `*`: any one name.
    Any,
    /// `[Key:value,…]`: the instances whose children have these values.
    Alias(Vec<AliasKey>),
}

/// One `Key:value` condition of an alias segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasKey {
    /// The child parameter, relative to the instance (`SSID`, `Stats.Enable`).
    pub path: String,
    /// The text its value must have.
    pub value: String,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
    object: bool,
}

/// Why a pattern does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid path pattern {:?}: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

/// Longest pattern accepted: CWMP limits parameter names to 256 characters; aliases add values.
pub const MAX_PATTERN_LEN: usize = 1024;

impl Pattern {
    /// Parse `text`.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let fail = |reason| PatternError { pattern: text.to_owned(), reason };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.len() > MAX_PATTERN_LEN {
            return Err(fail("it is longer than 1024 bytes"));
        }
        let mut segments = Vec::new();
        let mut chars = text.chars().peekable();
        let mut object = false;
        loop {
            let segment = if chars.peek() == Some(&'[') {
                chars.next();
                Segment::Alias(parse_alias(&mut chars).map_err(fail)?)
            } else {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if matches!(c, '[' | ']' | ':' | ',' | '\\') || c.is_whitespace() || c.is_control() {
                        return Err(fail("a name holds a character that is not allowed there"));
                    }
                    name.push(c);
                    chars.next();
                }
                match name.as_str() {
                    "" => return Err(fail("it has an empty segment")),
                    "*" => Segment::Any,
                    _ if name.contains('*') => return Err(fail("`*` must be a whole segment")),
                    _ => Segment::Name(name),
                }
            };
            segments.push(segment);
            match chars.next() {
                None => break,
                Some('.') if chars.peek().is_none() => {
                    object = true;
                    break;
                }
                Some('.') => {}
                Some(_) => return Err(fail("an alias must be followed by `.` or end the pattern")),
            }
        }
        Ok(Pattern { segments, object })
    }

    /// The segments in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the pattern ends in `.` (names objects).
    pub fn is_object(&self) -> bool {
        self.object
    }

    /// Whether the pattern has no wildcard and no alias: it names one path.
    pub fn is_literal(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Name(_)))
    }

    /// Whether the last segment selects instances of a table (`*`, an alias or a number).
    pub fn names_instances(&self) -> bool {
        match self.segments.last() {
            Some(Segment::Any | Segment::Alias(_)) => true,
            Some(Segment::Name(n)) => is_instance_number(n),
            None => false,
        }
    }

    /// The literal part before the first wildcard or alias, ending in `.` (or the whole path
    /// when literal): everything the pattern can match lies below it, so a store loads this range.
    pub fn literal_prefix(&self) -> String {
        let mut prefix = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Name(n) => {
                    prefix.push_str(n);
                    if i + 1 < self.segments.len() || self.object {
                        prefix.push('.');
                    }
                }
                _ => return prefix,
            }
        }
        prefix
    }

    /// The pattern with its last segment removed, as an object pattern (`A.B.*` → `A.B.`); `None`
    /// for a one-segment pattern.
    pub fn parent(&self) -> Option<Pattern> {
        (self.segments.len() > 1)
            .then(|| Pattern { segments: self.segments[..self.segments.len() - 1].to_vec(), object: true })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match segment {
                Segment::Name(n) => f.write_str(n)?,
                Segment::Any => f.write_str("*")?,
                Segment::Alias(keys) => {
                    f.write_str("[")?;
                    for (k, key) in keys.iter().enumerate() {
                        if k > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{}:{}", key.path, escape(&key.value))?;
                    }
                    f.write_str("]")?;
                }
            }
        }
        if self.object {
            f.write_str(".")?;
        }
        Ok(())
    }
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ',' | ']' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn parse_alias(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Vec<AliasKey>, &'static str> {
    let mut keys = Vec::new();
    loop {
        let mut path = String::new();
        loop {
            match chars.next() {
                Some(':') => break,
                Some(c) if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') => path.push(c),
                Some(_) => return Err("an alias key holds a character that is not allowed there"),
                None => return Err("an alias is not closed with `]`"),
            }
        }
        if path.is_empty() || path.starts_with('.') || path.ends_with('.') || path.contains("..") {
            return Err("an alias key is not a relative parameter path");
        }
        let mut value = String::new();
        let last = loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some(c) => value.push(c),
                    None => return Err("an alias ends in `\\`"),
                },
                Some(c @ (',' | ']')) => break c,
                Some(c) => value.push(c),
                None => return Err("an alias is not closed with `]`"),
            }
        };
        keys.push(AliasKey { path, value });
        if last == ']' {
            return Ok(keys);
        }
    }
}

/// Whether a path segment is an instance number (`1`, `42`).
pub fn is_instance_number(segment: &str) -> bool {
    !segment.is_empty() && segment.len() <= 10 && segment.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn parses_wildcards_aliases_and_objects() {
        let p = Pattern::parse("Device.WiFi.SSID.[SSID:guest,Stats.Up:1].Enable").unwrap();
        assert_eq!(p.segments().len(), 5);
        assert_eq!(
            p.segments()[3],
            Segment::Alias(vec![
                AliasKey { path: "SSID".into(), value: "guest".into() },
                AliasKey { path: "Stats.Up".into(), value: "1".into() },
            ])
        );
        assert!(!p.is_object());
        assert_eq!(p.literal_prefix(), "Device.WiFi.SSID.");
        let o = Pattern::parse("Device.WiFi.").unwrap();
        assert!(o.is_object() && o.is_literal());
        assert_eq!(o.literal_prefix(), "Device.WiFi.");
        assert!(Pattern::parse("Device.WiFi.SSID.*").unwrap().names_instances());
        assert!(Pattern::parse("Device.WiFi.SSID.3").unwrap().names_instances());
        assert!(!Pattern::parse("Device.WiFi.SSID").unwrap().names_instances());
    }

    #[test]
    fn alias_values_may_hold_dots_and_escapes() {
        let p = Pattern::parse(r"A.[IP:192.168.1.1,Name:a\,b\]c].X").unwrap();
        assert_eq!(
            p.segments()[1],
            Segment::Alias(vec![
                AliasKey { path: "IP".into(), value: "192.168.1.1".into() },
                AliasKey { path: "Name".into(), value: "a,b]c".into() },
            ])
        );
        assert_eq!(Pattern::parse(&p.to_string()).unwrap(), p);
    }

    #[test]
    fn rejects_malformed_patterns_with_a_reason() {
        for bad in ["", ".A", "A..B", "A.B*", "A.[X:1", "A.[:1].B", "A.[X:1]B", "A. B", "A.[X:1\\"] {
            let err = Pattern::parse(bad).unwrap_err();
            assert_eq!(err.pattern, bad);
            assert!(!err.reason.is_empty());
        }
        assert!(Pattern::parse(&"A.".repeat(600)).is_err());
    }

    #[test]
    fn parent_drops_the_last_segment() {
        let p = Pattern::parse("A.B.*").unwrap();
        assert_eq!(p.parent().unwrap().to_string(), "A.B.");
        assert!(Pattern::parse("A").unwrap().parent().is_none());
    }
}
