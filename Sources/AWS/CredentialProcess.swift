import Foundation

#if canImport(Glibc)
import Glibc
#endif

private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }

/// A profile's `credential_process`: a command, run through `/bin/sh -c` with the chain's environment,
/// that prints `{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken"?, "Expiration"?}` on
/// stdout and exits 0. Credentials without `Expiration` never expire. Errors name the profile and carry
/// the command's stderr, never its stdout (which holds the secrets) nor the command line.
enum CredentialProcess {
    /// What the command left: its exit, and its stdout and stderr (each cut at `outputLimit`).
    struct Output: Sendable {
        var status: Int32
        var signaled: Bool
        var stdout: [UInt8]
        var stderr: [UInt8]
    }

    /// Bytes kept of either stream; more is read (so the command never blocks on a full pipe) and dropped.
    static let outputLimit = 1 << 20

    /// Runs `command` for `profile` and decodes what it printed.
    static func credentials(command: String, profile: String, environment: [String: String], timeout: TimeInterval) async throws -> Credentials {
        let output: Output
        do {
            output = try await run(command, environment: environment, timeout: timeout)
        } catch let e as CredentialsError {
            throw CredentialsError(message: "credential_process of profile '\(profile)' \(e.message)")
        } catch {
            throw CredentialsError(message: "credential_process of profile '\(profile)' could not be started: \(error)")
        }
        return try decode(output, profile: profile)
    }

    /// Checks the exit and decodes stdout, as the AWS CLI does.
    static func decode(_ output: Output, profile: String) throws -> Credentials {
        let what = "credential_process of profile '\(profile)'"
        guard !output.signaled, output.status == 0 else {
            let how = output.signaled ? "was killed by signal \(output.status)" : "exited with status \(output.status)"
            let stderr = excerpt(output.stderr)
            throw CredentialsError(message: "\(what) \(how)" + (stderr.isEmpty ? " and wrote nothing on stderr" : ": \(stderr)"))
        }
        guard let json = try? JSONSerialization.jsonObject(with: Data(output.stdout)) as? [String: Any] else {
            throw CredentialsError(message: "\(what) did not print a JSON object on stdout")
        }
        guard let version = json["Version"] else {
            throw CredentialsError(message: "\(what) printed no Version (1 is the supported one)")
        }
        guard (version as? NSNumber)?.doubleValue == 1 else {
            throw CredentialsError(message: "\(what) printed Version \(String("\(version)".prefix(20))); only Version 1 is supported")
        }
        let missing = ["AccessKeyId", "SecretAccessKey"].filter { ((json[$0] as? String) ?? "").isEmpty }
        guard missing.isEmpty, let id = json["AccessKeyId"] as? String, let secret = json["SecretAccessKey"] as? String else {
            throw CredentialsError(message: "\(what) printed no \(missing.joined(separator: " and "))")
        }
        var expiration: Date?
        if let text = json["Expiration"] as? String {
            guard let date = CredentialChain.timestamp(text) else {
                throw CredentialsError(message: "\(what) printed an Expiration that is not an ISO 8601 time: '\(String(text.prefix(40)))'")
            }
            expiration = date
        }
        let token = (json["SessionToken"] as? String).flatMap { $0.isEmpty ? nil : $0 }
        return Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token, expiration: expiration, source: "credential_process (profile \(profile))")
    }

    /// stderr for an error message: trimmed, on one line, its last 1000 characters at most.
    static func excerpt(_ bytes: [UInt8]) -> String {
        let lines = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let text = lines.joined(separator: " | ")
        return text.count > 1000 ? "…" + text.suffix(1000) : text
    }

    /// Runs `/bin/sh -c command`, reading stdout and stderr on their own threads so that neither pipe
    /// fills up; after `timeout` the command's process group is killed and this throws.
    static func run(_ command: String, environment: [String: String], timeout: TimeInterval) async throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.environment = environment
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        let run = Run(process)
        return try await withCheckedThrowingContinuation { continuation in
            run.start(continuation)
            process.terminationHandler = { p in run.exited(p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                try? stdout.fileHandleForWriting.close()
                try? stderr.fileHandleForWriting.close()
                run.fail(error)
                return
            }
            // Foundation starts the child in its own process group: a timeout kills what it started too.
            let pid = process.processIdentifier
            Run.drain(stdout.fileHandleForReading) { run.read($0, stdout: true) }
            Run.drain(stderr.fileHandleForReading) { run.read($0, stdout: false) }
            // A thread of its own for the deadline: the shared dispatch pool may be busy (it has as many
            // threads as cores), and a timeout must not wait for it.
            Thread {
                if run.finished.wait(timeout: .now() + timeout) == .timedOut { run.timedOut(pid: pid, after: timeout) }
            }.start()
        }
    }

    /// One run's state: resumed once, when the command exited and both pipes reached end of file, or
    /// when the timeout struck.
    final class Run: @unchecked Sendable {
        private let lock = NSLock()
        private var process: Process?
        private var continuation: CheckedContinuation<Output, any Error>?
        private var output = Output(status: 0, signaled: false, stdout: [], stderr: [])
        private var pending = 3  // two end-of-files and the exit
        /// Signalled once the command exited and its pipes closed.
        let finished = DispatchSemaphore(value: 0)

        init(_ process: Process) { self.process = process }

        func start(_ c: CheckedContinuation<Output, any Error>) { lock.withLock { continuation = c } }

        /// Bytes from a pipe; nil at end of file.
        func read(_ bytes: [UInt8]?, stdout: Bool) {
            lock.withLock {
                if let bytes {
                    if stdout { output.stdout += bytes.prefix(max(0, CredentialProcess.outputLimit - output.stdout.count)) }
                    else { output.stderr += bytes.prefix(max(0, CredentialProcess.outputLimit - output.stderr.count)) }
                } else {
                    pending -= 1
                }
            }
            finishIfDone()
        }

        func exited(_ status: Int32, signaled: Bool) {
            lock.withLock {
                output.status = status
                output.signaled = signaled
                pending -= 1
                process = nil
            }
            finishIfDone()
        }

        func fail(_ error: any Error) { take()?.resume(throwing: error) }

        func timedOut(pid: pid_t, after timeout: TimeInterval) {
            guard let c = take() else { return }
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            c.resume(throwing: CredentialsError(message: "did not finish within \(Int(timeout.rounded(.up))) s and was killed"))
        }

        private func finishIfDone() {
            let done: (CheckedContinuation<Output, any Error>, Output)? = lock.withLock {
                guard pending == 0, let c = continuation else { return nil }
                continuation = nil
                defer { output.stdout = []; output.stderr = [] }  // the secrets go with the caller only
                return (c, output)
            }
            if let (c, output) = done {
                finished.signal()
                c.resume(returning: output)
            }
        }

        private func take() -> CheckedContinuation<Output, any Error>? {
            lock.withLock {
                defer { continuation = nil }
                return continuation
            }
        }

        /// Reads `handle` to its end on a thread of its own, handing each chunk over, then nil.
        static func drain(_ handle: FileHandle, _ chunk: @escaping @Sendable ([UInt8]?) -> Void) {
            let fd = handle.fileDescriptor
            Thread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = systemRead(fd, &buffer, buffer.count)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    chunk(Array(buffer[..<n]))
                }
                try? handle.close()
                chunk(nil)
            }.start()
        }
    }
}
