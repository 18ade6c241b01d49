import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Why a test server could not be started (with an install hint when it is missing).
public struct ServerError: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
///
/// Never the same port twice in one test process: the kernel may hand a just-released port out again,
/// and two servers started at once by tests running in parallel would then race for it — the loser
/// exits, and its test talks to the winner (a different kind of server) without knowing.
public func freePort() -> Int {
    while true {
        let port = anyFreePort()
        let fresh = handedOutLock.withLock { handedOut.insert(port).inserted }
        if fresh { return port }
    }
}

private let handedOutLock = NSLock()
nonisolated(unsafe) private var handedOut = Set<Int>()

private func anyFreePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

public func canConnect(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
}

/// A server process on a loopback port, stopped when released.
public final class LocalServer: @unchecked Sendable {
    public let pid: pid_t
    public let port: Int
    public var url: String { "http://127.0.0.1:\(port)" }
    /// Where the server's standard error goes (moto logs a line per answered request there).
    public var logPath: String { "/tmp/ctb-\(name)-\(port).log" }
    private let name: String

    public init(_ argv: [String], port: Int, environment: [String: String] = [:], name: String, installHint: String) throws {
        guard let path = LocalServer.which(argv[0]) else {
            throw ServerError(message: "\(name) is not installed (\(argv[0]) not found): \(installHint)")
        }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/tmp/ctb-\(name)-\(port).log", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        closeInheritedDescriptors(&actions)
        let cargs = ([path] + argv.dropFirst()).map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        let cenv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cenv.forEach { free($0) } }
        var child: pid_t = 0
        guard posix_spawn(&child, path, &actions, nil, cargs, cenv) == 0 else { throw ServerError(message: "cannot start \(name)") }
        pid = child
        self.port = port
        self.name = name
        let deadline = Date().addingTimeInterval(30)
        while !canConnect(port) {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let log = (try? String(contentsOfFile: "/tmp/ctb-\(name)-\(port).log", encoding: .utf8)) ?? ""
                throw ServerError(message: "\(name) exited at start: \(log.suffix(2000))")
            }
            guard Date() < deadline else { kill(pid, SIGKILL); throw ServerError(message: "\(name) did not listen on \(port)") }
            usleep(50_000)
        }
    }

    /// Waits until the server has logged nothing new for half a second (at most 30 s). Requests a
    /// killed client left queued (a fetch pool's worth) are still answered, and logged, after the kill:
    /// counting the log before they are would credit them to the client's next run.
    public func settle() {
        func size() -> Int { ((try? FileManager.default.attributesOfItem(atPath: logPath))?[.size] as? Int) ?? 0 }
        var last = size(), quiet = 0
        for _ in 0..<300 where quiet < 5 {
            usleep(100_000)
            let now = size()
            quiet = now == last ? quiet + 1 : 0
            last = now
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL); the object is unusable afterwards.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<100 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }

    private var stopped = false

    deinit { stop() }

    public static func which(_ name: String) -> String? {
        if name.hasPrefix("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let dirs: [String] = path.split(separator: ":").map(String.init) + ["/root/.pyenv/shims", "/usr/local/bin"]
        for dir in dirs {
            let p = "\(dir)/\(name)"
            if access(p, X_OK) == 0 { return p }
        }
        return nil
    }
}

/// A fresh temporary directory, removed when released.
public final class TempDir: @unchecked Sendable {
    public let path: String
    public init(_ name: String = "test") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("ctb-\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    public func sub(_ name: String) -> String { path + "/" + name }
    deinit { if ProcessInfo.processInfo.environment["CTB_KEEP_TMP"] == nil { try? FileManager.default.removeItem(atPath: path) } }
}

/// A seeded generator, so a failing run can be replayed from its seed.
public struct SplitMix64: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The directory holding the built products (test bundles sit beside the executables).
public func productsDirectory() -> URL {
    URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
}
