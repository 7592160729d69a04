//! The messages of a chaos run, made from its seed: good requests, a
//! repeat of every tenth one (same `request_id`, same bytes, published
//! later), pairs of requests racing for one process name, and unreadable
//! bodies.

use serde_json::json;

/// Service instances the requests go to (all of business 10).
pub const SERVICE_INSTANCES: i64 = 8;

/// What a message is, for the checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A valid request of its own; `repeat` for its second publication.
    Good { repeat: bool },
    /// One of the two requests of race `pair`, both for one process name.
    Racer { pair: usize },
    /// A body that is not JSON; its `message_id` stands in for the
    /// request_id of its error reply.
    Unreadable,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub request_id: String,
    pub body: Vec<u8>,
    /// Set for unreadable bodies only.
    pub message_id: Option<String>,
    pub kind: Kind,
}

/// `n` messages in publishing order, about one in ten a repeat, one in a
/// hundred a racer, and `unreadable` unreadable bodies spread among them.
pub fn messages(seed: u64, n: usize, unreadable: usize) -> Vec<Message> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out: Vec<Message> = Vec::with_capacity(n);
    // Repeats wait here until their turn: 20 to 400 messages later.
    let mut pending: Vec<(usize, Message)> = Vec::new();
    let mut good = 0usize;
    let mut pairs = 0usize;
    let mut unreadable_left = unreadable;
    while out.len() < n {
        let at = out.len();
        if let Some(k) = pending.iter().position(|(due, _)| *due <= at) {
            out.push(pending.swap_remove(k).1);
            continue;
        }
        let left = n - at;
        if unreadable_left > 0 && rng.usize(..left.max(1)) < unreadable_left {
            unreadable_left -= 1;
            let id = format!("chaos-{seed}-u{at}");
            out.push(Message {
                request_id: id.clone(),
                body: format!("not json {at} {{").into_bytes(),
                message_id: Some(id),
                kind: Kind::Unreadable,
            });
            continue;
        }
        if rng.usize(..100) == 0 && left >= 2 {
            let pair = pairs;
            pairs += 1;
            let si = 1 + rng.i64(0..SERVICE_INSTANCES);
            for side in ["a", "b"] {
                let id = format!("chaos-{seed}-race{pair}{side}");
                let body = request(
                    &id,
                    si,
                    &format!("race{pair}"),
                    &format!("race{pair}{side}"),
                    1,
                );
                out.push(Message {
                    request_id: id,
                    body,
                    message_id: None,
                    kind: Kind::Racer { pair },
                });
            }
            continue;
        }
        let id = format!("chaos-{seed}-g{good}");
        let si = 1 + rng.i64(0..SERVICE_INSTANCES);
        let processes = rng.usize(1..=3);
        let body = request(
            &id,
            si,
            &format!("g{good}"),
            &format!("g{good}f"),
            processes,
        );
        let message = Message {
            request_id: id,
            body,
            message_id: None,
            kind: Kind::Good { repeat: false },
        };
        if good.is_multiple_of(10) {
            let mut repeat = message.clone();
            repeat.kind = Kind::Good { repeat: true };
            pending.push((at + rng.usize(20..400), repeat));
        }
        good += 1;
        out.push(message);
    }
    out
}

/// A request whose processes are named `{name}-{k}` and `{func}-{k}`.
fn request(id: &str, si: i64, name: &str, func: &str, processes: usize) -> Vec<u8> {
    let processes: Vec<_> = (0..processes)
        .map(|k| json!({"process_info": {"bk_process_name": format!("{name}-{k}"), "bk_func_name": format!("{func}-{k}"), "proc_num": 1}}))
        .collect();
    serde_json::to_vec(&json!({
        "request_id": id, "bk_biz_id": 10, "service_instance_id": si,
        "bk_username": "chaos", "processes": processes,
    }))
    .expect("json")
}

#[test]
fn the_same_seed_makes_the_same_stream_with_every_kind_in_it() {
    let a = messages(7, 3000, 10);
    let b = messages(7, 3000, 10);
    assert_eq!(a.len(), 3000);
    assert!(a.iter().zip(&b).all(|(x, y)| x.body == y.body));
    let count = |f: &dyn Fn(&Kind) -> bool| a.iter().filter(|m| f(&m.kind)).count();
    assert_eq!(count(&|k| *k == Kind::Unreadable), 10);
    assert!(count(&|k| *k == Kind::Good { repeat: true }) > 200);
    assert!(count(&|k| matches!(k, Kind::Racer { .. })) >= 20);
}
