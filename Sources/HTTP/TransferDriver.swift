import CCurl
import Foundation
import Synchronization

/// One thread runs every transfer of an ``HTTPClient`` through libcurl's multi interface: many requests
/// in flight (a fetch pool of 128 GETs, an output's bulk requests) cost one thread and one poll, not a
/// thread each, and their connections are kept alive in one cache shared by every host.
///
/// Invariants:
/// 1. Only the driver thread touches the multi handle and the easy handles: it configures, attaches,
///    resumes, detaches and reuses them (libcurl handles are not thread-safe). Other threads reach it
///    through `state` (a `Mutex`) and `curl_multi_wakeup`, the one call libcurl allows from any thread;
///    the driver clears `state.multi` under the lock before it cleans the multi handle up, so a
///    wake-up never reaches a freed handle.
/// 2. At most `limit` transfers are attached at once; the rest wait in arrival order.
/// 3. Nothing on the driver thread blocks but `curl_multi_poll`: a full body channel pauses its own
///    transfer (`CURL_WRITEFUNC_PAUSE`: libcurl keeps the chunk and offers it again), and the reader
///    taking the buffer below its bound, or cancelling, wakes the driver to resume it. One slow reader
///    never holds up another transfer, and a stream buffers at most its bound plus one chunk.
/// 4. Each transfer ends exactly once, on the driver thread: detached, then its head and its body's end
///    reported, then its easy handle reset and kept for the next request.
/// 5. The driver leaves after a minute with nothing to do (closing its connections), or at once when
///    the client shut down and nothing waits or runs; the next request starts a new driver.
final class TransferDriver: Sendable {
    private struct State {
        var waiting: [Transfer] = []
        /// Transfers whose reader made room or went away: resume them (a cancelled one then aborts).
        var wakes: [Transfer] = []
        /// The running driver's multi handle as an address, for `curl_multi_wakeup` alone (nil: no driver runs).
        var multi: Int?
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
            if let multi = s.multi { curl_multi_wakeup(UnsafeMutableRawPointer(bitPattern: multi)) }
            if s.running { return false }
            s.running = true
            return true
        }
        if start {
            let thread = Thread { [self] in drive() }
            thread.name = "cloudtrailbeat.http"
            thread.stackSize = 512 << 10
            thread.start()
        }
    }

    /// Asks the driver to resume `transfer` (its reader made room, or cancelled it).
    func wake(_ transfer: Transfer) {
        state.withLock { s in
            s.wakes.append(transfer)
            if let multi = s.multi { curl_multi_wakeup(UnsafeMutableRawPointer(bitPattern: multi)) }
        }
    }

    /// The driver leaves once nothing waits or runs.
    func shutdown() {
        state.withLock { s in
            s.stopped = true
            if let multi = s.multi { curl_multi_wakeup(UnsafeMutableRawPointer(bitPattern: multi)) }
        }
    }

    /// Whether a driver thread runs now (for tests).
    var isRunning: Bool { state.withLock { $0.running } }

    private func drive() {
        guard let multi = curl_multi_init() else {
            let orphans = state.withLock { s -> [Transfer] in
                s.running = false
                defer { s.waiting = [] }
                return s.waiting
            }
            for t in orphans { t.complete(CURLE_OUT_OF_MEMORY) }
            return
        }
        // The connection cache holds a connection per transfer that may run at once.
        _ = cloudtrailbeat_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(limit, 8))
        var attached: [UnsafeMutableRawPointer: Transfer] = [:]
        var spares: [UnsafeMutableRawPointer] = []
        var idleSince = Date()
        // Published for curl_multi_wakeup alone, which libcurl allows from any thread (invariant 1).
        let published = Int(bitPattern: multi)
        state.withLock { $0.multi = published }
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
                    s.multi = nil
                    return ([], [], true)
                }
                return (arrivals, wakes, false)
            }
            if leave { break }
            for t in wakes {
                // Only a transfer still attached (not one waiting, nor one that ended meanwhile).
                if let easy = t.easy, attached[easy] === t { _ = curl_easy_pause(easy, Int32(CURLPAUSE_CONT)) }
            }
            for t in arrivals {
                guard let easy = spares.popLast() ?? curl_easy_init() else {
                    t.complete(CURLE_OUT_OF_MEMORY)
                    continue
                }
                guard t.configure(easy) else {
                    spares.append(easy)
                    continue
                }
                let rc = curl_multi_add_handle(multi, easy)
                if rc != CURLM_OK {
                    t.complete(CURLE_FAILED_INIT)
                    curl_easy_reset(easy)
                    spares.append(easy)
                    continue
                }
                attached[easy] = t
            }
            var running: Int32 = 0
            _ = curl_multi_perform(multi, &running)
            var left: Int32 = 0
            while let message = curl_multi_info_read(multi, &left) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
                let rc = message.pointee.data.result
                _ = curl_multi_remove_handle(multi, easy)
                let t = attached.removeValue(forKey: easy)
                t?.complete(rc)
                curl_easy_reset(easy)
                spares.append(easy)
            }
            if !attached.isEmpty { idleSince = Date() }
            // Returns on socket activity, libcurl's next timeout, a wake-up, or after a second.
            _ = curl_multi_poll(multi, nil, 0, 1000, nil)
        }
        for easy in spares { curl_easy_cleanup(easy) }
        curl_multi_cleanup(multi)
    }
}
