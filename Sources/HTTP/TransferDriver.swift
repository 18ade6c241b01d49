import CCurl
import Foundation
import Synchronization

/// One thread runs every transfer of an ``HTTPClient`` through libcurl's multi interface, event-driven
/// (`curl_multi_socket_action`): many requests in flight (a fetch pool of 128 GETs, an output's bulk
/// requests) cost one thread and one `poll` over the sockets that have something to do — not a thread
/// each, and not a pass over every transfer per event as `curl_multi_perform` makes — and their
/// connections are kept alive in one cache shared by every host.
///
/// Invariants:
/// 1. Only the driver thread touches the multi handle and the easy handles: it configures, attaches,
///    resumes, aborts, detaches and reuses them (libcurl handles are not thread-safe). Other threads
///    reach it through `state` (a `Mutex`) and a byte written to its wake-up pipe; the driver clears
///    `state.wakeFD` under the lock before it closes the pipe, so a wake-up never writes to a closed
///    (or reused) descriptor.
/// 2. At most `limit` transfers are attached at once; the rest wait in arrival order.
/// 3. Nothing on the driver thread blocks but its `poll`: a full body channel pauses its own transfer
///    (`CURL_WRITEFUNC_PAUSE`: libcurl keeps the chunk and offers it again), and the reader taking the
///    buffer below its bound wakes the driver to resume it; a cancelled body wakes it to abort the
///    transfer. One slow reader never holds up another transfer, and a stream buffers at most its
///    bound plus one chunk.
/// 4. Each transfer ends exactly once, on the driver thread: detached, then its head and its body's end
///    reported, then its easy handle reset and kept for the next request.
/// 5. The driver leaves after a minute with nothing to do (closing its connections), or at once when
///    the client shut down and nothing waits or runs; the next request starts a new driver.
final class TransferDriver: Sendable {
    private struct State {
        var waiting: [Transfer] = []
        /// Transfers whose reader made room (resume them) or went away (abort them).
        var wakes: [Transfer] = []
        /// The running driver's wake-up pipe (its write end; nil: no driver runs).
        var wakeFD: Int32?
        var running = false
        var stopped = false
    }

    private let state = Mutex(State())
    /// Transfers attached at once (``HTTPClient/Configuration/maxConcurrent``).
    let limit: Int
    /// Seconds an idle driver keeps its thread and connections.
    static let idleLife: Double = 60

    init(limit: Int) { self.limit = limit }

    /// Queues a transfer; starts the driver thread if none runs.
    func enqueue(_ transfer: Transfer) {
        let start = state.withLock { s -> Bool in
            s.waiting.append(transfer)
            TransferDriver.signal(s.wakeFD)
            if s.running { return false }
            s.running = true
            return true
        }
        if start {
            let thread = Thread { [self] in drive() }
            thread.name = TransferDriver.threadName
            thread.stackSize = 512 << 10
            thread.start()
        }
    }

    /// The driver thread's name (at most 15 bytes: what /proc and `top -H` show).
    static let threadName = "ctb-http-driver"

    /// Asks the driver to resume `transfer` (its reader made room) or abort it (its reader cancelled).
    func wake(_ transfer: Transfer) {
        state.withLock { s in
            s.wakes.append(transfer)
            TransferDriver.signal(s.wakeFD)
        }
    }

    /// The driver leaves once nothing waits or runs.
    func shutdown() {
        state.withLock { s in
            s.stopped = true
            TransferDriver.signal(s.wakeFD)
        }
    }

    /// Under `state`'s lock (invariant 1). A full pipe already holds a wake-up: EAGAIN is fine.
    private static func signal(_ fd: Int32?) {
        guard let fd else { return }
        var byte: UInt8 = 1
        _ = Glibc.write(fd, &byte, 1)
    }

    /// The sockets libcurl asked to watch and its one timer, kept by its callbacks (on the driver thread).
    private final class Watch {
        var sockets: [Int32: Int16] = [:]
        /// When to call `curl_multi_socket_action(CURL_SOCKET_TIMEOUT)` (monotonic ns), if at all.
        var deadline: UInt64?
    }

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    private func drive() {
        var pipeFDs: [Int32] = [-1, -1]
        guard let multi = curl_multi_init() else { return orphan(CURLE_OUT_OF_MEMORY) }
        guard pipe(&pipeFDs) == 0 else {
            curl_multi_cleanup(multi)
            return orphan(CURLE_OUT_OF_MEMORY)
        }
        for fd in pipeFDs {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        let watch = Watch()
        let watchPointer = Unmanaged.passUnretained(watch).toOpaque()
        _ = cloudtrailbeat_multi_setopt_socket_callback(multi, CURLMOPT_SOCKETFUNCTION) { _, socket, what, userp, _ in
            let watch = Unmanaged<Watch>.fromOpaque(userp!).takeUnretainedValue()
            switch what {
            case Int32(CURL_POLL_REMOVE): watch.sockets[socket] = nil
            case Int32(CURL_POLL_IN): watch.sockets[socket] = Int16(POLLIN)
            case Int32(CURL_POLL_OUT): watch.sockets[socket] = Int16(POLLOUT)
            default: watch.sockets[socket] = Int16(POLLIN) | Int16(POLLOUT)
            }
            return 0
        }
        _ = cloudtrailbeat_multi_setopt_pointer(multi, CURLMOPT_SOCKETDATA, watchPointer)
        _ = cloudtrailbeat_multi_setopt_timer_callback(multi, CURLMOPT_TIMERFUNCTION) { _, timeout, userp in
            let watch = Unmanaged<Watch>.fromOpaque(userp!).takeUnretainedValue()
            watch.deadline = timeout < 0 ? nil : TransferDriver.now() + UInt64(timeout) * 1_000_000
            return 0
        }
        _ = cloudtrailbeat_multi_setopt_pointer(multi, CURLMOPT_TIMERDATA, watchPointer)
        // The connection cache holds a connection per transfer that may run at once.
        _ = cloudtrailbeat_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(limit, 8))

        var attached: [UnsafeMutableRawPointer: Transfer] = [:]
        var spares: [UnsafeMutableRawPointer] = []
        var idleSince = Date()
        var running: Int32 = 0
        let wakeRead = pipeFDs[0], wakeWrite = pipeFDs[1]
        state.withLock { $0.wakeFD = wakeWrite }

        /// Detaches a finished (or aborted) transfer, reports its end and keeps its handle (invariant 4).
        func end(_ easy: UnsafeMutableRawPointer, _ rc: CURLcode) {
            _ = curl_multi_remove_handle(multi, easy)
            attached.removeValue(forKey: easy)?.complete(rc)
            curl_easy_reset(easy)
            spares.append(easy)
        }

        while true {
            let room = limit - attached.count
            let idle = attached.isEmpty && Date().timeIntervalSince(idleSince) >= TransferDriver.idleLife
            let (arrivals, wakes, leave) = state.withLock { s -> ([Transfer], [Transfer], Bool) in
                let take = min(room, s.waiting.count)
                let arrivals = Array(s.waiting.prefix(take))
                s.waiting.removeFirst(take)
                let wakes = s.wakes
                s.wakes = []
                if attached.isEmpty && arrivals.isEmpty && s.waiting.isEmpty && (s.stopped || idle) {
                    s.running = false
                    s.wakeFD = nil
                    return ([], [], true)
                }
                return (arrivals, wakes, false)
            }
            if leave { break }
            for t in wakes {
                // Only a transfer still attached (not one waiting, nor one that ended meanwhile).
                guard let easy = t.easy, attached[easy] === t else { continue }
                if t.channel.cancelled {
                    end(easy, CURLE_ABORTED_BY_CALLBACK)
                } else {
                    _ = curl_easy_pause(easy, Int32(CURLPAUSE_CONT))
                }
            }
            for t in arrivals {
                guard let easy = spares.popLast() ?? curl_easy_init() else {
                    t.complete(CURLE_OUT_OF_MEMORY)
                    continue
                }
                guard t.configure(easy) else {
                    curl_easy_reset(easy)
                    spares.append(easy)
                    continue
                }
                attached[easy] = t
                if curl_multi_add_handle(multi, easy) != CURLM_OK { end(easy, CURLE_FAILED_INIT) }
            }

            // Wait for a socket libcurl watches, its timer, or a wake-up (at most a second).
            var wait: Int32 = 1000
            if let deadline = watch.deadline {
                let now = TransferDriver.now()
                wait = deadline <= now ? 0 : Int32(min(1000, (deadline - now + 999_999) / 1_000_000))
            }
            var fds = [pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            for (socket, events) in watch.sockets { fds.append(pollfd(fd: socket, events: events, revents: 0)) }
            if poll(&fds, nfds_t(fds.count), wait) > 0 {
                if fds[0].revents != 0 {
                    var sink = [UInt8](repeating: 0, count: 256)
                    while Glibc.read(wakeRead, &sink, sink.count) > 0 {}
                }
                for f in fds.dropFirst() where f.revents != 0 {
                    var mask: Int32 = 0
                    if f.revents & Int16(POLLIN) != 0 { mask |= Int32(CURL_CSELECT_IN) }
                    if f.revents & Int16(POLLOUT) != 0 { mask |= Int32(CURL_CSELECT_OUT) }
                    if f.revents & (Int16(POLLERR) | Int16(POLLHUP) | Int16(POLLNVAL)) != 0 { mask |= Int32(CURL_CSELECT_ERR) }
                    _ = curl_multi_socket_action(multi, f.fd, mask, &running)
                }
            }
            if let deadline = watch.deadline, deadline <= TransferDriver.now() {
                // A one-shot timer: libcurl sets the next one from inside the call if it needs one.
                watch.deadline = nil
                _ = curl_multi_socket_action(multi, -1 /* CURL_SOCKET_TIMEOUT */, 0, &running)
            }
            var left: Int32 = 0
            while let message = curl_multi_info_read(multi, &left) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
                end(easy, message.pointee.data.result)
            }
            if !attached.isEmpty { idleSince = Date() }
        }
        for easy in spares { curl_easy_cleanup(easy) }
        curl_multi_cleanup(multi)
        close(wakeRead)
        close(wakeWrite)
    }

    /// No driver could start: what waits fails, and the next request tries again.
    private func orphan(_ rc: CURLcode) {
        let orphans = state.withLock { s -> [Transfer] in
            s.running = false
            defer { s.waiting = [] }
            return s.waiting
        }
        for t in orphans { t.complete(rc) }
    }
}
