/// Deepest nesting accepted, counting the top-level value as level 1.
pub const MAX_DEPTH: usize = 128;

/// True when `body` opens more than `max` arrays or objects inside each other.
/// Brackets inside strings (escapes included) do not count; malformed input
/// is left for the parser to refuse.
pub fn deeper_than(body: &[u8], max: usize) -> bool {
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
