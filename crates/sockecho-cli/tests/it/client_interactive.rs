//! `sockecho client` on a terminal: the tutorial's prompt loop, driven through a pseudo-terminal
//! exactly as a user at a keyboard would drive it.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::{Child, ExitStatus, Stdio};

use crate::support::{Server, Transcript, WAIT, assert_no_panic, sockecho, temp_dir, wait_child};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{LocalModes, Winsize, tcsetwinsize};

const GREETING: &str = "Connected to server. Type messages (empty line to quit):";

/// `sockecho ARGS` with a pseudo-terminal as its stdin, stdout and stderr.
struct Terminal {
    child: Child,
    keyboard: File,
    screen: Transcript,
}

impl Terminal {
    fn spawn(args: &[&str]) -> Terminal {
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY;
        // Keeps the master out of the child; only Linux takes it when opening.
        #[cfg(target_os = "linux")]
        let flags = flags | OpenptFlags::CLOEXEC;
        let master: OwnedFd = openpt(flags).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        tcsetwinsize(
            &master,
            Winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .expect("set window size");
        let slave_path = ptsname(&master, Vec::new()).expect("ptsname");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(slave_path.to_str().expect("pts path is UTF-8"))
            .expect("open the pty slave");
        let mut cmd = sockecho(args);
        cmd.env("TERM", "xterm")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().expect("spawn sockecho");
        // Only the child may hold the slave, so the master sees EOF (EIO) when it exits.
        drop(cmd);

        let master = File::from(master);
        let keyboard = master.try_clone().expect("dup master");
        let mut answer = master.try_clone().expect("dup master");
        let screen = Transcript::chunks(master, move |chunk| {
            // A real terminal answers the line editor's cursor-position query.
            if chunk.contains("\x1b[6n") {
                let _ = answer.write_all(b"\x1b[1;1R");
            }
        });
        Terminal {
            child,
            keyboard,
            screen,
        }
    }

    fn screen(&self) -> String {
        self.screen.text()
    }

    /// Waits until the screen shows `needle`.
    fn wait_for(&self, needle: &str) -> String {
        self.wait_until(&format!("{needle:?}"), |screen| screen.contains(needle))
    }

    /// Waits for the `n`th prompt, so typing goes to the line editor, not to a terminal that is
    /// still in cooked mode.
    fn wait_for_prompts(&self, n: usize) {
        self.wait_until(&format!("prompt {n}"), |screen| prompts(screen) >= n);
    }

    fn wait_until(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        self.screen.wait_until(what, ready)
    }

    /// Types `keys` as a user would (Enter is `\r`).
    fn type_keys(&mut self, keys: &str) {
        self.keyboard.write_all(keys.as_bytes()).expect("type");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let status = wait_child(&mut self.child, WAIT).unwrap_or_else(|| {
            panic!(
                "client still running; the terminal shows:\n{:?}",
                self.screen()
            )
        });
        self.screen.finish();
        assert_no_panic(&self.screen());
        status
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The prompt as it appears at the start of a line.
fn prompts(screen: &str) -> usize {
    screen.matches("> ").count() - screen.matches("SERVER> ").count()
}

#[test]
fn tcp_session_greets_prompts_echoes_and_quits_on_an_empty_line() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let mut term = Terminal::spawn(&["client", &server.arg()]);
    term.wait_for(GREETING);
    term.wait_for("> ");
    term.type_keys("hello\r");
    term.wait_for("SERVER> hello");
    term.wait_for_prompts(2);
    term.type_keys("how are you?\r");
    term.wait_for("SERVER> how are you?");
    term.wait_for_prompts(3);
    term.type_keys("\r");
    let status = term.wait_exit();
    let screen = term.screen();
    assert_eq!(status.code(), Some(0), "{screen:?}");
    let greeting_at = screen.find(GREETING).expect("greeting");
    let first_reply_at = screen.find("SERVER> hello").expect("reply");
    assert!(greeting_at < first_reply_at, "{screen:?}");
    assert!(!screen.contains("error"), "{screen:?}");
    // The server got exactly the two lines, newline-terminated.
    server.wait_for(&format!(
        "disconnected ({} bytes echoed",
        "hello\n".len() + "how are you?\n".len()
    ));
}

#[test]
fn unix_session_works_the_same() {
    let dir = temp_dir();
    let path = dir.path().join("i.sock");
    let endpoint = format!("unix:{}", path.display());
    let _server = Server::start(&[&endpoint], &[]);
    let mut term = Terminal::spawn(&["client", &endpoint]);
    term.wait_for(GREETING);
    term.wait_for_prompts(1);
    term.type_keys("over unix\r");
    term.wait_for("SERVER> over unix");
    term.wait_for_prompts(2);
    term.type_keys("\r");
    assert_eq!(term.wait_exit().code(), Some(0), "{:?}", term.screen());
}

#[test]
fn end_of_input_at_the_prompt_quits_cleanly() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let mut term = Terminal::spawn(&["client", &server.arg()]);
    term.wait_for_prompts(1);
    term.type_keys("\x04"); // Ctrl-D
    assert_eq!(term.wait_exit().code(), Some(0), "{:?}", term.screen());
}

#[test]
fn the_server_going_away_is_reported_with_exit_code_1() {
    let mut server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let endpoint = server.arg();
    let mut term = Terminal::spawn(&["client", &endpoint]);
    term.wait_for_prompts(1);
    term.type_keys("first\r");
    term.wait_for("SERVER> first");
    term.wait_for_prompts(2);
    server.kill();
    // The client may notice at once and exit before the line is typed; typing into a
    // terminal nobody reads any more may then fail, which is fine.
    let _ = term.keyboard.write_all(b"anyone there?\r");
    let status = term.wait_exit();
    let screen = term.screen();
    assert_eq!(status.code(), Some(1), "{screen:?}");
    assert!(
        screen.contains(&format!("connection to {endpoint} lost")),
        "{screen:?}"
    );
    assert!(!screen.contains("SERVER> anyone there?"), "{screen:?}");
    // The line editor's raw mode is undone: the terminal is usable again.
    let modes = rustix::termios::tcgetattr(&term.keyboard)
        .expect("tcgetattr")
        .local_modes;
    assert!(
        modes.contains(LocalModes::ICANON | LocalModes::ECHO),
        "terminal left in raw mode: {modes:?}"
    );
}

#[test]
fn udp_session_echoes_each_line_as_a_datagram() {
    let server = Server::start(&["udp://127.0.0.1:0"], &[]);
    let mut term = Terminal::spawn(&["client", &server.arg()]);
    term.wait_for(GREETING);
    term.wait_for_prompts(1);
    term.type_keys("datagram one\r");
    term.wait_for("SERVER> datagram one");
    term.wait_for_prompts(2);
    term.type_keys("\r");
    assert_eq!(term.wait_exit().code(), Some(0), "{:?}", term.screen());
}

#[test]
fn udp_session_reports_a_lost_reply_and_exits_1() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("udp://{}", silent.local_addr().expect("addr"));
    let mut term = Terminal::spawn(&["client", "--timeout", "200ms", &endpoint]);
    term.wait_for_prompts(1);
    term.type_keys("lost\r");
    term.wait_for("no reply");
    term.wait_for_prompts(2);
    term.type_keys("\r");
    let status = term.wait_exit();
    assert_eq!(status.code(), Some(1), "{:?}", term.screen());
    assert!(
        !term.screen().contains("SERVER> lost"),
        "{:?}",
        term.screen()
    );
}
