package ninelives.crash;

import java.io.IOException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Options;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.util.Progressable;

/**
 * The local file system with crash points inside Delta's own writes, for crash tests.
 *
 * <p>{@code NINELIVES_CRASH_AT=<event>@<table>[#<version>]} kills the whole process group
 * with SIGKILL (driver, JVM and Python workers, as a real {@code kill -9}) at the instant
 * the event happens to the table whose folder path ends with {@code /<table>}:
 *
 * <ul>
 *   <li>{@code log_folder_made}: the table's {@code _delta_log} folder was just created and
 *       holds nothing yet (the very start of its first commit);
 *   <li>{@code data_file_opened}: a data file of the table was just created, and the commit
 *       that would name it is not written;
 *   <li>{@code commit_staged}: a commit's temporary file is written and is about to be
 *       renamed into place (Delta's commit on a local file system);
 *   <li>{@code checkpoint_staged}: a checkpoint is written and is about to be renamed into
 *       place;
 *   <li>{@code last_checkpoint_staged}: the {@code _last_checkpoint} hint is written and is
 *       about to be renamed into place.
 * </ul>
 *
 * <p>{@code #<version>} narrows a commit or checkpoint event to that version: {@code #0} is
 * the table's first commit. Every other name, including the Python crash points of {@code
 * framework.crashpoints}, is not this class's and changes nothing: without a spec of its
 * own the class behaves exactly as Hadoop's {@link LocalFileSystem}. {@link CrashingLocalFs}
 * routes Hadoop's {@code FileContext} API (which Delta's log store uses) through it.
 */
public class CrashingLocalFileSystem extends LocalFileSystem {
  private static final Pattern SPEC =
      Pattern.compile("(log_folder_made|data_file_opened|commit_staged|checkpoint_staged"
          + "|last_checkpoint_staged)@([^#]+)(?:#(\\d+))?");
  private static final Pattern COMMIT = Pattern.compile("(\\d{20})\\.json");
  private static final Pattern CHECKPOINT =
      Pattern.compile("(\\d{20})\\.checkpoint(\\..*)?\\.parquet");

  private static final String EVENT;
  private static final String TABLE;
  private static final Long VERSION;

  static {
    String spec = System.getenv("NINELIVES_CRASH_AT");
    Matcher m = spec == null ? null : SPEC.matcher(spec);
    boolean ours = m != null && m.matches();
    EVENT = ours ? m.group(1) : null;
    TABLE = ours ? "/" + m.group(2).replaceAll("^/+|/+$", "") : null;
    VERSION = ours && m.group(3) != null ? Long.valueOf(m.group(3)) : null;
  }

  /** Die with the whole process group if the event is the one named, on its table. */
  static void at(String event, Path table, Long version) {
    if (EVENT == null || !EVENT.equals(event) || table == null) {
      return;
    }
    if (!table.toUri().getPath().endsWith(TABLE)) {
      return;
    }
    if (VERSION != null && !VERSION.equals(version)) {
      return;
    }
    System.err.println("ninelives: crash point " + event + " at " + table);
    System.err.flush();
    try {
      // "kill 0": every process of this process group, this JVM included.
      new ProcessBuilder("kill", "-KILL", "0").inheritIO().start().waitFor();
    } catch (IOException | InterruptedException e) {
      // fall through: at least this JVM dies at once
    }
    Runtime.getRuntime().halt(137);
  }

  private static Path tableOfLogFile(Path file) {
    Path log = file.getParent();
    return log != null && "_delta_log".equals(log.getName()) ? log.getParent() : null;
  }

  /** The table folder of a data file: the nearest ancestor that is not a partition folder. */
  private static Path tableOfDataFile(Path file) {
    Path dir = file.getParent();
    while (dir != null && dir.getName().contains("=")) {
      dir = dir.getParent();
    }
    return dir;
  }

  /** Called just before {@code src} is renamed to {@code dst}. */
  static void beforeRename(Path dst) {
    if (EVENT == null) {
      return;
    }
    String name = dst.getName();
    Path table = tableOfLogFile(dst);
    Matcher commit = COMMIT.matcher(name);
    Matcher checkpoint = CHECKPOINT.matcher(name);
    if (commit.matches()) {
      at("commit_staged", table, Long.valueOf(commit.group(1)));
    } else if (checkpoint.matches()) {
      at("checkpoint_staged", table, Long.valueOf(checkpoint.group(1)));
    } else if ("_last_checkpoint".equals(name)) {
      at("last_checkpoint_staged", table, null);
    }
  }

  static void afterCreate(Path file) {
    if (EVENT == null) {
      return;
    }
    if (file.getName().startsWith("part-") && tableOfLogFile(file) == null) {
      at("data_file_opened", tableOfDataFile(file), null);
    }
  }

  @Override
  public FSDataOutputStream create(
      Path f,
      FsPermission permission,
      boolean overwrite,
      int bufferSize,
      short replication,
      long blockSize,
      Progressable progress)
      throws IOException {
    FSDataOutputStream out =
        super.create(f, permission, overwrite, bufferSize, replication, blockSize, progress);
    afterCreate(f);
    return out;
  }

  @Override
  public boolean mkdirs(Path f, FsPermission permission) throws IOException {
    Path log = newLogFolder(f);
    boolean made = super.mkdirs(f, permission);
    afterMkdirs(log);
    return made;
  }

  @Override
  public boolean mkdirs(Path f) throws IOException {
    Path log = newLogFolder(f);
    boolean made = super.mkdirs(f);
    afterMkdirs(log);
    return made;
  }

  /** The {@code _delta_log} folder that making {@code f} would create, if any. */
  private Path newLogFolder(Path f) throws IOException {
    if (!"log_folder_made".equals(EVENT)) {
      return null;
    }
    for (Path p = f; p != null; p = p.getParent()) {
      if ("_delta_log".equals(p.getName())) {
        return exists(p) ? null : p;
      }
    }
    return null;
  }

  private void afterMkdirs(Path log) throws IOException {
    if (log != null && exists(log)) {
      at("log_folder_made", log.getParent(), null);
    }
  }

  @Override
  public boolean rename(Path src, Path dst) throws IOException {
    beforeRename(dst);
    return super.rename(src, dst);
  }

  @Override
  @SuppressWarnings("deprecation")
  protected void rename(Path src, Path dst, Options.Rename... options) throws IOException {
    beforeRename(dst);
    super.rename(src, dst, options);
  }
}
