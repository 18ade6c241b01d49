/// This build's release.
public enum Release {
    /// The version `cloudtrailbeat version` and `--version` print.
    public static let version = "0.6.0"
}
