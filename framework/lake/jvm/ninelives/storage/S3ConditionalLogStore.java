package ninelives.storage;

import io.delta.storage.HadoopFileSystemLogStore;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.util.Arrays;
import java.util.Iterator;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.s3a.RemoteFileChangedException;
import software.amazon.awssdk.awscore.exception.AwsServiceException;

/**
 * A Delta log store for S3 through S3A in which S3 itself decides which writer gets a
 * commit version: a new log file is one PUT with {@code If-None-Match: *}, so of two
 * writers racing for version N exactly one succeeds and the other gets
 * {@link FileAlreadyExistsException}, whatever the number of drivers. Delta's own
 * S3SingleDriverLogStore checks existence and then writes, which is safe only with
 * one writing driver per table.
 *
 * <p>S3A (Hadoop 3.4.2 and later, HADOOP-19256) sends that PUT for a file created with
 * {@code createFile(path).overwrite(false)} and the mandatory builder option
 * {@code fs.option.create.conditional.overwrite}; the condition is checked when the
 * stream is closed, and a refusal (HTTP 412) comes back as
 * {@link RemoteFileChangedException}. Where the store does not do conditional writes
 * ({@code fs.s3a.create.conditional.enabled=false}) S3A refuses the create itself, so
 * this log store fails rather than silently losing its guarantee. A file system other
 * than S3A rejects the mandatory option.
 *
 * <p>Reads and listings are Hadoop's ({@link HadoopFileSystemLogStore}): S3 lists and
 * reads after a write consistently. An overwrite (Delta's {@code _last_checkpoint}) is
 * a plain PUT. A PUT is all or nothing, so a partial log file is never visible.
 */
public class S3ConditionalLogStore extends HadoopFileSystemLogStore {

  /** S3A's builder option for "write only if there is no object at the path". */
  public static final String CONDITIONAL_OVERWRITE = "fs.option.create.conditional.overwrite";

  private static final int PRECONDITION_FAILED = 412;

  public S3ConditionalLogStore(Configuration initHadoopConf) {
    super(initHadoopConf);
  }

  @Override
  public void write(
      Path path, Iterator<String> actions, Boolean overwrite, Configuration hadoopConf)
      throws IOException {
    FileSystem fs = path.getFileSystem(hadoopConf);
    byte[] content = lines(actions);
    if (Boolean.TRUE.equals(overwrite)) {
      try (FSDataOutputStream out = fs.create(path, true)) {
        out.write(content);
      }
      return;
    }
    // FileSystem.createFile returns a raw builder type.
    FSDataOutputStream out =
        (FSDataOutputStream)
            fs.createFile(path).overwrite(false).must(CONDITIONAL_OVERWRITE, true).build();
    try {
      out.write(content);
    } catch (IOException e) {
      out.close();
      throw e;
    }
    try {
      out.close(); // the conditional PUT
    } catch (IOException e) {
      if (!preconditionFailed(e)) {
        throw e;
      }
      // The AWS SDK retries a PUT whose response was lost; if the first attempt landed,
      // the retry is refused although the object is this very commit. Byte-equal
      // content (Delta's commitInfo carries a fresh txnId) means ours: success, not a
      // conflict that would make Delta commit the same actions again as version N+1.
      // A read that fails leaves the outcome unknown: that error, not a conflict.
      if (Arrays.equals(content, readAll(fs, path))) {
        return;
      }
      FileAlreadyExistsException exists = new FileAlreadyExistsException(path.toString());
      exists.initCause(e);
      throw exists;
    }
  }

  @Override
  public Boolean isPartialWriteVisible(Path path, Configuration hadoopConf) {
    return false;
  }

  /** Delta's log file format: each action on a line of its own. */
  private static byte[] lines(Iterator<String> actions) {
    StringBuilder text = new StringBuilder();
    while (actions.hasNext()) {
      text.append(actions.next()).append('\n');
    }
    return text.toString().getBytes(StandardCharsets.UTF_8);
  }

  private static byte[] readAll(FileSystem fs, Path path) throws IOException {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (InputStream in = fs.open(path)) {
      in.transferTo(bytes);
    }
    return bytes.toByteArray();
  }

  /** Whether S3 refused the PUT because an object is already there (HTTP 412). */
  static boolean preconditionFailed(Throwable error) {
    for (Throwable e = error; e != null; e = e.getCause()) {
      if (e instanceof RemoteFileChangedException) {
        return true;
      }
      if (e instanceof AwsServiceException
          && ((AwsServiceException) e).statusCode() == PRECONDITION_FAILED) {
        return true;
      }
      if (e.getCause() == e) {
        break;
      }
    }
    return false;
  }
}
