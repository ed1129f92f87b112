//! Who is on the other end of a Runtime API connection, for environments whose Runtime
//! API listens on the host's loopback (unisolated ones).
//!
//! An isolated environment's listener is bound inside its own network namespace, so only
//! its processes can connect. An unisolated one listens on `127.0.0.1:<port>` of the host,
//! where any local process could connect, take an invocation's payload from `/next` and
//! post its response. [`PeerCheck`] admits a connection only when the socket at its other
//! end is held by a process of the environment's tree: it asks the kernel for that
//! socket (sock_diag netlink, an exact lookup by the connection's addresses: its owner's
//! uid and its inode), then looks for `socket:[inode]` among the open files of the tree's
//! root process and, only if the root does not hold it, of the rest of the tree (its
//! process group and the root's descendants). It runs once per connection, when it is
//! accepted: runtimes keep their connection alive, so the warm path costs nothing.
//!
//! The check answers "does a process of the environment hold this socket", nothing more:
//! a process of the same user that may ptrace the runtime can read its memory anyway;
//! what it keeps out is every other process that can merely reach loopback.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the peer is not an IPv4 loopback connection: {0}")]
    NotIpv4(SocketAddr),
    #[error("sock_diag lookup failed: {0}")]
    Diag(#[from] nix::Error),
    #[error("sock_diag answered something unexpected: {0}")]
    Reply(&'static str),
}

/// Why a connection was admitted or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A process of the environment holds the peer socket (its pid).
    Admitted(i32),
    /// The peer socket is gone (the client closed it before the check).
    Gone,
    /// The peer socket belongs to another user.
    OtherUser(u32),
    /// No process of the environment holds the peer socket.
    Outside,
}

impl Verdict {
    pub fn admitted(&self) -> bool {
        matches!(self, Self::Admitted(_))
    }
}

/// The peer check of one environment: its root process (also its process group id,
/// as [`super::sandbox::ProcessSandbox`] starts it) and the uid its processes run as.
#[derive(Debug, Clone)]
pub struct PeerCheck {
    root: i32,
    uid: u32,
}

impl PeerCheck {
    pub fn new(root: i32, uid: u32) -> Self {
        Self { root, uid }
    }

    /// Decides on the connection `local` (the listener's side) ← `peer`. Blocks briefly
    /// (one netlink round trip and a few `/proc` reads); run it off the async workers.
    pub fn check(&self, local: SocketAddr, peer: SocketAddr) -> Result<Verdict, PeerError> {
        let (SocketAddr::V4(local), SocketAddr::V4(peer)) = (local, peer) else {
            return Err(PeerError::NotIpv4(peer));
        };
        // A socket closed by its process has no inode any more (orphaned, or TIME_WAIT).
        let socket = match tcp_socket(peer, local)? {
            Some(socket) if socket.inode != 0 => socket,
            _ => return Ok(Verdict::Gone),
        };
        if socket.uid != self.uid {
            return Ok(Verdict::OtherUser(socket.uid));
        }
        let target = format!("socket:[{}]", socket.inode);
        if holds(self.root, &target) {
            return Ok(Verdict::Admitted(self.root));
        }
        Ok(tree_members(self.root)
            .into_iter()
            .find(|pid| *pid != self.root && holds(*pid, &target))
            .map_or(Verdict::Outside, Verdict::Admitted))
    }
}

/// The kernel's view of one TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketInfo {
    pub uid: u32,
    pub inode: u32,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HEADER: usize = 16;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte socket id, expires,
/// rqueue, wqueue, uid, inode.
const DIAG_MSG_UID: usize = 4 + 48 + 12;
const DIAG_MSG_INODE: usize = DIAG_MSG_UID + 4;

/// `SOCK_DIAG_BY_FAMILY` request for the one IPv4 TCP socket whose own address is
/// `source` and whose remote address is `destination`.
fn diag_request(source: SocketAddrV4, destination: SocketAddrV4) -> Vec<u8> {
    let mut msg = Vec::with_capacity(72);
    msg.extend_from_slice(&72u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    // struct inet_diag_req_v2
    msg.push(libc::AF_INET as u8);
    msg.push(libc::IPPROTO_TCP as u8);
    msg.push(0); // ext
    msg.push(0); // pad
    msg.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    // struct inet_diag_sockid (ports and addresses in network order)
    msg.extend_from_slice(&source.port().to_be_bytes());
    msg.extend_from_slice(&destination.port().to_be_bytes());
    let mut address = [0u8; 16];
    address[..4].copy_from_slice(&source.ip().octets());
    msg.extend_from_slice(&address);
    address[..4].copy_from_slice(&destination.ip().octets());
    msg.extend_from_slice(&address);
    msg.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    msg.extend_from_slice(&u32::MAX.to_ne_bytes()); // INET_DIAG_NOCOOKIE
    msg.extend_from_slice(&u32::MAX.to_ne_bytes());
    debug_assert_eq!(msg.len(), 72);
    msg
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    buf.get(at..at + 2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

/// Reads the kernel's answer to [`diag_request`]: the socket, `None` when there is none.
fn parse_diag_reply(reply: &[u8]) -> Result<Option<SocketInfo>, PeerError> {
    let kind = u16_at(reply, 4).ok_or(PeerError::Reply("short netlink header"))?;
    let payload = &reply[NLMSG_HEADER.min(reply.len())..];
    match kind {
        SOCK_DIAG_BY_FAMILY => {
            let uid = u32_at(payload, DIAG_MSG_UID).ok_or(PeerError::Reply("short message"))?;
            let inode = u32_at(payload, DIAG_MSG_INODE).ok_or(PeerError::Reply("short message"))?;
            Ok(Some(SocketInfo { uid, inode }))
        }
        NLMSG_ERROR => {
            let code = u32_at(payload, 0).ok_or(PeerError::Reply("short error"))? as i32;
            if code == -libc::ENOENT {
                Ok(None)
            } else {
                Err(PeerError::Diag(nix::Error::from_raw(-code)))
            }
        }
        _ => Err(PeerError::Reply("unknown message type")),
    }
}

/// The TCP socket whose own address is `source` and whose peer is `destination`.
pub fn tcp_socket(
    source: SocketAddrV4,
    destination: SocketAddrV4,
) -> Result<Option<SocketInfo>, PeerError> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    use std::os::fd::AsRawFd;
    let request = diag_request(source, destination);
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut reply = [0u8; 512];
    let n = recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    parse_diag_reply(&reply[..n])
}

/// True when process `pid` has `target` (`socket:[inode]`) among its open files.
fn holds(pid: i32, target: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries
        .flatten()
        .any(|entry| std::fs::read_link(entry.path()).is_ok_and(|link| link.as_os_str() == target))
}

/// `(pid, ppid, pgrp)` from the text of `/proc/<pid>/stat` (the command name may hold
/// spaces and parentheses: fields are counted from the last `)`).
fn parse_stat(text: &str) -> Option<(i32, i32, i32)> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_whitespace().next()?.parse().ok()?;
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((pid, ppid, pgrp))
}

/// The processes of the tree rooted at `root`: its process group and its descendants.
fn tree_members(root: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let stats: Vec<(i32, i32, i32)> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|text| parse_stat(&text))
        .collect();
    members_of(root, &stats)
}

/// The pids among `stats` (`(pid, ppid, pgrp)`) in `root`'s process group or below it.
fn members_of(root: i32, stats: &[(i32, i32, i32)]) -> Vec<i32> {
    let parents: HashMap<i32, i32> = stats.iter().map(|&(pid, ppid, _)| (pid, ppid)).collect();
    let below_root = |pid: i32| {
        let mut at = pid;
        // Bounded walk: a pid table cannot hold a longer chain than its own size.
        for _ in 0..=parents.len() {
            if at == root {
                return true;
            }
            match parents.get(&at) {
                Some(&parent) if parent > 0 && parent != at => at = parent,
                _ => return false,
            }
        }
        false
    };
    stats
        .iter()
        .filter(|&&(pid, _, pgrp)| pgrp == root || below_root(pid))
        .map(|&(pid, _, _)| pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::os::unix::process::CommandExt;

    fn v4(addr: SocketAddr) -> SocketAddrV4 {
        match addr {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => panic!("test sockets are IPv4"),
        }
    }

    #[test]
    fn the_request_names_the_socket_by_its_addresses() {
        let source = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 40000);
        let destination = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 9001);
        let msg = diag_request(source, destination);
        assert_eq!(msg.len(), 72);
        assert_eq!(u32_at(&msg, 0), Some(72));
        assert_eq!(u16_at(&msg, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(
            &msg[16..18],
            &[libc::AF_INET as u8, libc::IPPROTO_TCP as u8]
        );
        assert_eq!(&msg[24..26], &40000u16.to_be_bytes());
        assert_eq!(&msg[26..28], &9001u16.to_be_bytes());
        assert_eq!(&msg[28..32], &[127, 0, 0, 1]);
        assert_eq!(&msg[44..48], &[127, 0, 0, 2]);
        assert_eq!(&msg[64..72], &[0xff; 8]);
    }

    #[test]
    fn error_replies_are_read() {
        let mut reply = vec![0u8; 36];
        reply[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        reply[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert!(parse_diag_reply(&reply).unwrap().is_none());
        reply[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert!(parse_diag_reply(&reply).is_err());
        assert!(parse_diag_reply(&reply[..3]).is_err());
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (a) b (c) S 17 4240 4240 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(line), Some((4242, 17, 4240)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn members_are_the_group_and_the_descendants() {
        // 10 is the root (group 10); 11 its child in the group; 12 a child that left the
        // group (setsid); 13 a grandchild; 20 an unrelated process; 21 in group 10 only.
        let stats = [
            (1, 0, 1),
            (10, 1, 10),
            (11, 10, 10),
            (12, 10, 12),
            (13, 12, 12),
            (20, 1, 20),
            (21, 1, 10),
        ];
        let mut members = members_of(10, &stats);
        members.sort();
        assert_eq!(members, vec![10, 11, 12, 13, 21]);
    }

    #[test]
    fn a_connection_of_this_process_is_found_and_held_by_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        let local = listener.local_addr().unwrap();
        let info = tcp_socket(v4(peer), v4(local))
            .unwrap()
            .expect("the client socket");
        assert_eq!(info.uid, nix::unistd::geteuid().as_raw());
        let me = std::process::id() as i32;
        assert!(holds(me, &format!("socket:[{}]", info.inode)));
        let check = PeerCheck::new(me, info.uid);
        assert_eq!(check.check(local, peer).unwrap(), Verdict::Admitted(me));
        drop(client);
    }

    #[test]
    fn a_connection_of_another_tree_is_refused_and_a_closed_one_is_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let client = TcpStream::connect(local).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        // A tree of its own (a sleeping child in a new process group) does not hold it.
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let uid = nix::unistd::geteuid().as_raw();
        let check = PeerCheck::new(other.id() as i32, uid);
        assert_eq!(check.check(local, peer).unwrap(), Verdict::Outside);
        // The owner's uid is checked before any file is looked at.
        let stranger = PeerCheck::new(other.id() as i32, uid.wrapping_add(1));
        assert_eq!(check.check(local, peer).unwrap(), Verdict::Outside);
        assert_eq!(
            stranger.check(local, peer).unwrap(),
            Verdict::OtherUser(uid)
        );
        other.kill().unwrap();
        other.wait().unwrap();
        // Once the client closes (and the server side too), the socket is gone.
        drop(client);
        drop(_server_side);
        let started = std::time::Instant::now();
        loop {
            let verdict = check.check(local, peer).unwrap();
            if verdict == Verdict::Gone {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{verdict:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
