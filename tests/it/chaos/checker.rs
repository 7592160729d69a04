//! The chaos run's checker: what every history must satisfy, whatever the
//! faults. Each rule gives the violations it found, with the request that
//! shows them, so that a failed run names what to look at.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::history::History;
use super::stream::{Kind, Message};

/// The database's side of a run: process ids, and the stored reply of each
/// request_id.
pub struct Tables {
    pub process_ids: Vec<i64>,
    pub stored: HashMap<String, Vec<u8>>,
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub violations: Vec<String>,
    pub replies: usize,
    pub repeats: usize,
    pub race_pairs: usize,
    pub dead_letters: usize,
}

fn code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Value>(body).ok()?["code"].as_i64()
}

fn ids(body: &[u8]) -> Vec<i64> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_i64)
        .collect()
}

/// Checks `history` of `messages` against `tables`.
pub fn check(messages: &[Message], history: &History, tables: &Tables) -> Verdict {
    let mut v = Verdict {
        replies: history.replies.values().map(Vec::len).sum(),
        dead_letters: history.dead.len(),
        ..Verdict::default()
    };
    let mut fail = |s: String| v.violations.push(s);
    let none = Vec::new();

    // Confirmed publications per request_id: each is answered at least
    // once, and all of a request's replies are byte-identical (a repeat
    // gets the first reply byte for byte).
    let mut confirmed: HashMap<&str, u32> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        *confirmed.entry(m.request_id.as_str()).or_default() += history.confirmed[i];
    }
    for (id, &times) in &confirmed {
        let replies = history.replies.get(*id).unwrap_or(&none);
        if (replies.len() as u32) < times {
            fail(format!(
                "{id}: confirmed {times} times, answered {} times",
                replies.len()
            ));
        }
        if let Some(first) = replies.first()
            && let Some(other) = replies.iter().find(|r| *r != first)
        {
            fail(format!(
                "{id}: replies differ: {} and {}",
                String::from_utf8_lossy(first),
                String::from_utf8_lossy(other)
            ));
        }
        if let (Some(first), Some(stored)) = (replies.first(), tables.stored.get(*id))
            && first != stored
        {
            fail(format!(
                "{id}: the reply is not the stored one: {} against {}",
                String::from_utf8_lossy(first),
                String::from_utf8_lossy(stored)
            ));
        }
    }

    // Good requests succeed; of two racers exactly one does, the other is
    // 1199014 every time.
    let mut pairs: HashMap<usize, Vec<&str>> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let first = history
            .replies
            .get(&m.request_id)
            .and_then(|r| r.first())
            .and_then(|b| code(b));
        match &m.kind {
            Kind::Good { repeat } => {
                v.repeats += usize::from(*repeat);
                if first.is_some_and(|c| c != 0) {
                    fail(format!(
                        "{}: a good request answered {first:?}",
                        m.request_id
                    ));
                }
            }
            Kind::Racer { pair } => pairs.entry(*pair).or_default().push(&m.request_id),
            Kind::Unreadable => {
                let dead = history.dead.iter().any(|(id, body, _)| {
                    id.as_deref() == m.message_id.as_deref() && *body == m.body
                });
                if history.confirmed[i] > 0 && !dead {
                    fail(format!(
                        "{}: an unreadable body is not in the dead-letter queue",
                        m.request_id
                    ));
                }
            }
        }
    }
    v.race_pairs = pairs.len();
    for (pair, racers) in &pairs {
        let codes: Vec<Option<i64>> = racers
            .iter()
            .map(|id| {
                history
                    .replies
                    .get(*id)
                    .and_then(|r| r.first())
                    .and_then(|b| code(b))
            })
            .collect();
        let won = codes.iter().filter(|c| **c == Some(0)).count();
        let lost = codes.iter().filter(|c| **c == Some(1_199_014)).count();
        if won != 1 || lost != 1 {
            fail(format!("race {pair}: {racers:?} answered {codes:?}"));
        }
    }

    // Every process row is named by a success reply, and every id a reply
    // names is a row.
    let replied: HashSet<i64> = history
        .replies
        .values()
        .filter_map(|r| r.first())
        .filter(|b| code(b) == Some(0))
        .flat_map(|b| ids(b))
        .collect();
    let rows: HashSet<i64> = tables.process_ids.iter().copied().collect();
    if rows.len() != tables.process_ids.len() {
        fail("a process id is stored twice".into());
    }
    let unnamed: Vec<_> = rows.difference(&replied).take(5).collect();
    if !unnamed.is_empty() {
        fail(format!("process rows no reply names: {unnamed:?} ..."));
    }
    let missing: Vec<_> = replied.difference(&rows).take(5).collect();
    if !missing.is_empty() {
        fail(format!("replied process ids with no row: {missing:?} ..."));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::stream::messages;

    /// A clean history of `stream`: one reply per message, success for
    /// good requests and the first racer, 1199014 for the second, 1199000
    /// and a dead letter for unreadable bodies; the rows that go with it.
    fn clean(stream: &[Message]) -> (History, Tables) {
        let mut h = History {
            sent: vec![1; stream.len()],
            confirmed: vec![1; stream.len()],
            ..History::default()
        };
        let mut tables = Tables {
            process_ids: Vec::new(),
            stored: HashMap::new(),
        };
        let mut replies: HashMap<String, Vec<u8>> = HashMap::new();
        for m in stream {
            let reply = replies.entry(m.request_id.clone()).or_insert_with(|| {
                let won = match &m.kind {
                    Kind::Good { .. } => true,
                    Kind::Racer { .. } => m.request_id.ends_with('a'),
                    Kind::Unreadable => false,
                };
                if won {
                    let id = tables.process_ids.len() as i64 + 1;
                    tables.process_ids.push(id);
                    let body = format!(
                        r#"{{"code":0,"request_id":"{}","data":[{id}]}}"#,
                        m.request_id
                    )
                    .into_bytes();
                    tables.stored.insert(m.request_id.clone(), body.clone());
                    body
                } else {
                    let code = if m.kind == Kind::Unreadable {
                        1_199_000
                    } else {
                        1_199_014
                    };
                    format!(
                        r#"{{"code":{code},"request_id":"{}","data":null}}"#,
                        m.request_id
                    )
                    .into_bytes()
                }
            });
            h.replies
                .entry(m.request_id.clone())
                .or_default()
                .push(reply.clone());
            if m.kind == Kind::Unreadable {
                h.dead.push((
                    m.message_id.clone(),
                    m.body.clone(),
                    Some("not_json".into()),
                ));
            }
        }
        (h, tables)
    }

    #[test]
    fn a_clean_history_passes() {
        let stream = messages(3, 2000, 5);
        let (h, tables) = clean(&stream);
        assert_eq!(check(&stream, &h, &tables).violations, Vec::<String>::new());
    }

    #[test]
    fn each_broken_promise_is_a_violation() {
        let stream = messages(3, 2000, 5);
        let repeat = stream
            .iter()
            .find(|m| m.kind == Kind::Good { repeat: true })
            .expect("a repeat")
            .request_id
            .clone();
        let racer = stream
            .iter()
            .find(|m| matches!(m.kind, Kind::Racer { .. }) && m.request_id.ends_with('b'))
            .expect("a racer")
            .request_id
            .clone();
        type Break<'a> = Box<dyn Fn(&mut History, &mut Tables) + 'a>;
        let breaks: [(&str, Break<'_>); 6] = [
            (
                "a repeat answered otherwise",
                Box::new(|h, _| {
                    h.replies.get_mut(&repeat).expect("replies")[1] =
                        br#"{"code":1199014}"#.to_vec();
                }),
            ),
            (
                "a confirmed request unanswered",
                Box::new(|h, _| {
                    h.replies.remove(&repeat);
                }),
            ),
            (
                "both racers win",
                Box::new(|h, _| {
                    h.replies
                        .insert(racer.clone(), vec![br#"{"code":0,"data":[]}"#.to_vec()]);
                }),
            ),
            (
                "a dead letter missing",
                Box::new(|h, _| {
                    h.dead.pop();
                }),
            ),
            (
                "a process row no reply names",
                Box::new(|_, t| t.process_ids.push(999_999)),
            ),
            (
                "a reply that is not the stored one",
                Box::new(|_, t| {
                    t.stored.insert(repeat.clone(), b"{}".to_vec());
                }),
            ),
        ];
        for (what, break_it) in breaks {
            let (mut h, mut tables) = clean(&stream);
            break_it(&mut h, &mut tables);
            assert!(
                !check(&stream, &h, &tables).violations.is_empty(),
                "{what} is found"
            );
        }
    }
}
