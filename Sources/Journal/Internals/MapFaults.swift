import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// A fault inside a journal's memory map, turned into the damage message and an exit status.
//
// The checks at open (DataFile.swift) stop a file that is already short or overwritten. Two kinds of
// damage they cannot see: a data.mdb truncated while a process has it mapped, and garbage inside a data
// page that LMDB takes at its word (it keeps no page checksums) — a node whose size points past the
// end of the file. Either way a read lands in the map beyond the file's end, and the kernel sends
// SIGBUS. Once the process asked for it (``Journal/exitOnMapFault(status:)``, the CLI does at start),
// a SIGBUS whose address lies in a journal's map writes that journal's damage message to standard
// error and ends the process with the given status; any other SIGBUS goes to the handler that was
// there before (the Swift runtime's, or the default).
//
// The handler runs in signal context: it touches only memory prepared beforehand (the slots below, each
// a map's range and a C string) and calls only write(2) and _exit(2).

enum MapFaults {
    /// One open journal's map: its address range and the message for a fault inside it.
    struct Slot {
        var start: UInt = 0
        var end: UInt = 0
        var message: UnsafeMutablePointer<CChar>?
        var length = 0
    }

    static let capacity = 16
    /// Written under `lock`, read by the handler without it (a torn range can only miss a fault).
    nonisolated(unsafe) static let slots: UnsafeMutablePointer<Slot> = {
        let p = UnsafeMutablePointer<Slot>.allocate(capacity: capacity)
        p.initialize(repeating: Slot(), count: capacity)
        return p
    }()
    nonisolated(unsafe) static var exitStatus: Int32 = 0
    nonisolated(unsafe) static let previous: UnsafeMutablePointer<sigaction> = {
        let p = UnsafeMutablePointer<sigaction>.allocate(capacity: 1)
        p.initialize(to: sigaction())
        return p
    }()
    static let lock = NSLock()
    nonisolated(unsafe) static var installed = false
    nonisolated(unsafe) static var used = [Bool](repeating: false, count: capacity)

    /// Installs the SIGBUS handler (once per process).
    static func install(status: Int32) {
        lock.withLock {
            exitStatus = status
            guard !installed else { return }
            installed = true
            _ = slots
            _ = previous
            var action = sigaction()
            action.__sigaction_handler.sa_sigaction = { signal, info, _ in
                let address = UInt(bitPattern: info?.pointee._sifields._sigfault.si_addr)
                for i in 0..<MapFaults.capacity {
                    let slot = MapFaults.slots[i]
                    guard slot.length > 0, let message = slot.message, address >= slot.start, address < slot.end else { continue }
                    _ = write(2, message, slot.length)
                    _exit(MapFaults.exitStatus)
                }
                // Not a journal's map: the handler before this one decides (the fault repeats on return).
                sigaction(signal, MapFaults.previous, nil)
            }
            action.sa_flags = SA_SIGINFO | SA_ONSTACK
            sigemptyset(&action.sa_mask)
            sigaction(SIGBUS, &action, previous)
        }
    }

    /// A slot for the map of `dataFile` with `message`, or nil when no handler is installed (or every
    /// slot is taken: that journal goes unguarded).
    static func claim(message: String) -> Int? {
        lock.withLock {
            guard installed, let i = used.firstIndex(of: false) else { return nil }
            used[i] = true
            let bytes = Array(message.utf8)
            let text = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            bytes.withUnsafeBufferPointer { b in
                for (j, byte) in b.enumerated() { text[j] = CChar(bitPattern: byte) }
            }
            text[bytes.count] = 0
            slots[i] = Slot(start: 0, end: 0, message: text, length: bytes.count)
            return i
        }
    }

    /// Reads where `dataFile` is mapped now (/proc/self/maps: LMDB reports its map's address only with
    /// MDB_FIXEDMAP) into slot `i`. Called after every mapping change: open and each map resize.
    static func locate(_ i: Int, dataFile: String) {
        var start = UInt.max
        var end: UInt = 0
        if let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8) {
            for line in maps.split(separator: "\n") where line.hasSuffix(" " + dataFile) {
                let range = line.prefix { $0 != " " }.split(separator: "-")
                guard range.count == 2, let s = UInt(range[0], radix: 16), let e = UInt(range[1], radix: 16), e > s else { continue }
                start = min(start, s)
                end = max(end, e)
            }
        }
        lock.withLock {
            slots[i].start = end > 0 ? start : 0
            slots[i].end = end
        }
    }

    /// Frees slot `i` (the journal closed: its map is gone).
    static func release(_ i: Int) {
        lock.withLock {
            let message = slots[i].message
            slots[i] = Slot()
            used[i] = false
            message?.deallocate()
        }
    }
}
