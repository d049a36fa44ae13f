//! How large an event may be: the limits on a task's depth and size and on text
//! fields, and the checks that enforce them.

use super::InvalidEvent;

/// The deepest nesting of arrays and objects a task may have: a scalar is depth
/// 0, `[1]` depth 1.
pub const MAX_TASK_DEPTH: usize = 64;

/// The largest task, in bytes of its compact JSON.
pub const MAX_TASK_BYTES: usize = 4 * 1024 * 1024;

/// The longest text field (`source`, `target`, `detail`, and the strings of
/// `remote`), in bytes.
///
/// With [`MAX_TASK_BYTES`], this keeps every record the log stores well within the
/// line limit of `verify` and `import`
/// ([`audit::MAX_LINE`](crate::audit::MAX_LINE)), escaping included: what the
/// ledger stores, an export carries and an import takes back.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Refuses a text field longer than [`MAX_TEXT_BYTES`].
pub(super) fn check_text(field: &'static str, text: &str) -> Result<(), InvalidEvent> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(InvalidEvent::TextTooLong {
            field,
            bytes: text.len(),
        });
    }
    Ok(())
}

/// Checks a task's depth without recursion, then its encoded size.
pub(crate) fn check_task(task: &serde_json::Value) -> Result<(), InvalidEvent> {
    use serde_json::Value;
    let mut stack = vec![(task, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let depth = depth + 1;
        if depth > MAX_TASK_DEPTH {
            return Err(InvalidEvent::TaskTooDeep);
        }
        stack.extend(children.map(|child| (child, depth)));
    }
    let mut counter = Counter(0);
    // Writing to a counter fails only if serde_json fails, which it cannot for a
    // parsed value; the count is what matters.
    let _ = serde_json::to_writer(&mut counter, task);
    if counter.0 > MAX_TASK_BYTES {
        return Err(InvalidEvent::TaskTooLarge { bytes: counter.0 });
    }
    Ok(())
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
