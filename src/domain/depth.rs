//! The nesting limit of contract section 2: a body nested deeper than
//! [`MAX_DEPTH`] levels is not valid JSON.
//!
//! serde_json's own guard stops one level short (at 128), so the body is
//! measured here first, in one pass without allocation, and then parsed
//! with serde_json's guard off: the measurement bounds its recursion.

/// Deepest nesting accepted, counting the top-level value as level 1.
pub const MAX_DEPTH: usize = 128;

/// True when `body` opens more than `max` arrays or objects inside each other.
/// Brackets inside strings (escapes included) do not count; malformed input
/// is left for the parser to refuse.
pub fn deeper_than(body: &[u8], max: usize) -> bool {
    // Nesting is at most the number of opening brackets, strings included:
    // a typical request has far fewer than `max` in all, counted without
    // branches, and needs no closer look.
    let opening = body.iter().filter(|&&b| b == b'[' || b == b'{').count();
    opening > max && nested_deeper_than(body, max)
}

fn nested_deeper_than(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nesting_and_ignores_brackets_in_strings() {
        assert!(!deeper_than(b"{}", 1));
        assert!(deeper_than(b"{\"a\":[]}", 1));
        assert!(!deeper_than(br#"{"a":"[[[[\"[["}"#, 1));
        assert!(!deeper_than(br#"{"a":"\\"}"#, 1));
        assert!(deeper_than(br#"{"a":"\\",[1]}"#, 1));
    }

    #[test]
    fn brackets_in_strings_do_not_count_past_the_quick_bound() {
        let mut body = format!(r#"{{"a":"{}","b":"#, "[{".repeat(100));
        body.push_str(&"[".repeat(127));
        body.push_str(&"]".repeat(127));
        body.push('}');
        assert!(!deeper_than(body.as_bytes(), 128));
        let deeper = body
            .replacen(r#""b":"#, r#""b":["#, 1)
            .replacen('}', "]}", 1);
        assert!(deeper_than(deeper.as_bytes(), 128));
    }
}
