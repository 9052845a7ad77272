//! `ping`'s output, in ping's own layout: a line per event and the closing statistics.

use std::time::Duration;

use sockecho::ping::{PingEvent, PingSummary};

use crate::format::{millis, percent};

/// One output line for an event. `peer` is updated when the connection opens.
pub fn describe(event: &PingEvent, peer: &mut String, size: usize, timeout: Duration) -> String {
    match event {
        PingEvent::Started {
            peer: reached,
            connect,
        } => {
            *peer = reached.to_string();
            let connected = connect.map_or(String::new(), |d| {
                format!(", connected in {} ms", millis(d))
            });
            format!("PING {peer}: {size} bytes per message{connected}")
        }
        PingEvent::Reply { seq, bytes, rtt } => {
            format!(
                "{bytes} bytes from {peer}: seq={seq} time={} ms",
                millis(*rtt)
            )
        }
        PingEvent::Timeout { seq } => {
            format!(
                "no reply from {peer}: seq={seq} timeout after {} ms",
                millis(timeout)
            )
        }
        PingEvent::Corrupt { seq, bytes, rtt } => {
            let seq = seq.map_or("?".into(), |s| s.to_string());
            let time = rtt.map_or(String::new(), |d| format!(" time={} ms", millis(d)));
            format!("wrong reply from {peer}: seq={seq} {bytes} bytes, not what was sent{time}")
        }
        PingEvent::Late { seq, rtt } => format!(
            "late reply from {peer}: seq={seq} time={} ms (already counted as lost)",
            millis(*rtt)
        ),
        PingEvent::Duplicate { seq } => format!("duplicate reply from {peer}: seq={seq}"),
        PingEvent::Error { seq, problem } => match seq {
            Some(seq) => format!("error from {peer}: seq={seq} {problem}"),
            None => format!("error from {peer}: {problem}"),
        },
    }
}

/// The closing statistics.
pub fn summary_text(s: &PingSummary) -> String {
    let mut out = format!(
        "\n--- {} ping statistics ---\n{} sent, {} received, {} loss, time {} ms",
        s.peer,
        s.sent,
        s.received,
        percent(s.loss_percent()),
        s.elapsed.as_millis()
    );
    for (n, what) in [
        (s.corrupt, "wrong"),
        (s.duplicates, "duplicates"),
        (s.errors, "errors"),
    ] {
        if n > 0 {
            out.push_str(&format!(", {n} {what}"));
        }
    }
    out.push('\n');
    if let Some(rtt) = s.rtt {
        out.push_str(&format!(
            "rtt min/avg/max/mdev = {}/{}/{}/{} ms\n",
            millis(rtt.min),
            millis(rtt.avg),
            millis(rtt.max),
            millis(rtt.mdev)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_ping() {
        let mut peer = String::new();
        let started = PingEvent::Started {
            peer: "tcp://127.0.0.1:7000".parse().unwrap(),
            connect: Some(Duration::from_micros(120)),
        };
        let t = Duration::from_secs(1);
        assert_eq!(
            describe(&started, &mut peer, 64, t),
            "PING tcp://127.0.0.1:7000: 64 bytes per message, connected in 0.120 ms"
        );
        let reply = PingEvent::Reply {
            seq: 3,
            bytes: 64,
            rtt: Duration::from_micros(61),
        };
        assert_eq!(
            describe(&reply, &mut peer, 64, t),
            "64 bytes from tcp://127.0.0.1:7000: seq=3 time=0.061 ms"
        );
        assert_eq!(
            describe(&PingEvent::Timeout { seq: 4 }, &mut peer, 64, t),
            "no reply from tcp://127.0.0.1:7000: seq=4 timeout after 1000.000 ms"
        );
    }
}
