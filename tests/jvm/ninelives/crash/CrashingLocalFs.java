package ninelives.crash;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.DelegateToFileSystem;
import org.apache.hadoop.fs.FsConstants;

/**
 * Hadoop's {@code FileContext} view of {@link CrashingLocalFileSystem}: set as {@code
 * fs.AbstractFileSystem.file.impl}, so that Delta's log store, which commits through
 * {@code FileContext}, passes the same crash points as everything else.
 */
public class CrashingLocalFs extends DelegateToFileSystem {
  CrashingLocalFs(URI uri, Configuration conf) throws IOException, URISyntaxException {
    super(FsConstants.LOCAL_FS_URI, new CrashingLocalFileSystem(), conf, "file", false);
  }
}
