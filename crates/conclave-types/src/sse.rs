//! Reading the Server-Sent Events the API streams (`/v1/watch`, `/v1/elections/*/observe`).
//!
//! Why here: the event framing is part of the API's contract, like the JSON shapes, and
//! every reader of it in conclave (the CLI, the configuration sync) must split frames the
//! same way. This is the framing only: bytes in, events out, no IO.

/// One event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    /// `message` unless the frame names one.
    pub event: String,
    /// The `data` lines, joined with newlines.
    pub data: String,
}

/// Splits a byte stream into events: feed it chunks as they arrive, then take events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Add a chunk of the stream (carriage returns are dropped).
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend(chunk.iter().filter(|b| **b != b'\r'));
    }

    /// The next complete event, skipping frames with only comments (heartbeats); `None`
    /// until more of the stream arrives.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        // An event ends at a blank line.
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&raw);
            let mut event = SseEvent {
                event: "message".into(),
                ..SseEvent::default()
            };
            let mut data = Vec::new();
            let mut any = false;
            for line in text.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => event.id = Some(value.to_owned()),
                    "event" => event.event = value.to_owned(),
                    "data" => data.push(value.to_owned()),
                    // "" is a comment (heartbeats); unknown fields are ignored.
                    _ => continue,
                }
                any = true;
            }
            if any {
                event.data = data.join("\n");
                return Some(event);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_comments_skipped_data_lines_joined() {
        let mut p = SseParser::default();
        p.push(b": heartbeat\n\nid: 7\r\nevent: put\r\ndata: {\"a\"");
        assert_eq!(p.next_event(), None);
        p.push(b":1}\ndata: second line\n\ndata:x\n\n");
        assert_eq!(
            p.next_event(),
            Some(SseEvent {
                id: Some("7".into()),
                event: "put".into(),
                data: "{\"a\":1}\nsecond line".into(),
            })
        );
        let plain = p.next_event().unwrap();
        assert_eq!(
            (plain.event.as_str(), plain.data.as_str()),
            ("message", "x")
        );
        assert_eq!(p.next_event(), None);
    }
}
