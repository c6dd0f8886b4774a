"""A GStreamer RTSP server on 127.0.0.1 for the live-camera tests (run with Debian's /usr/bin/python3: python3-gi
is not importable inside a virtual environment; see ../shared/docs/infra.md).

    /usr/bin/python3 gst_rtsp_server.py --port 8554 --mount /cam --file clip.mp4        # an H.264 MP4, real time
    /usr/bin/python3 gst_rtsp_server.py --port 8554 --mount /cam --pattern ball --fps 100  # live test source
    /usr/bin/python3 gst_rtsp_server.py --port 8554 --mount /cam --file a.mp4 --file b.mp4  # a camera's time goes on

Prints ``ready`` on stdout once it listens. Each client gets its own media from the start of the file; with several
``--file``, the first client gets the first file, the next client the next one (the last one from then on), so
successive connections see successive parts of a camera's day.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

args = argparse.ArgumentParser()
args.add_argument("--port", type=int, required=True)
args.add_argument("--mount", default="/cam")
args.add_argument("--file", action="append", default=[],
                  help="H.264 MP4 file (served at its own frame rate); repeat for one file per successive client")
args.add_argument("--pattern", default="ball", help="videotestsrc pattern when no --file is given")
args.add_argument("--fps", type=int, default=25)
args.add_argument("--width", type=int, default=320)
args.add_argument("--height", type=int, default=240)
a = args.parse_args()

Gst.init(None)


class SuccessiveFiles(GstRtspServer.RTSPMediaFactory):
    """One file per client, in order; the last one for every later client."""

    def __init__(self, launches):
        super().__init__()
        self.launches = launches
        self.clients = 0

    def do_create_element(self, url):
        launch = self.launches[min(self.clients, len(self.launches) - 1)]
        self.clients += 1
        return Gst.parse_launch(launch)


def file_launch(path):
    return f'( filesrc location="{path}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'


launches = [file_launch(f) for f in a.file]
if a.file:
    launch = launches[0]
else:
    launch = (f"( videotestsrc is-live=true pattern={a.pattern} ! video/x-raw,width={a.width},height={a.height},"
              f"framerate={a.fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
              f"! rtph264pay name=pay0 pt=96 config-interval=1 )")
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(str(a.port))
factory = SuccessiveFiles(launches) if len(launches) > 1 else GstRtspServer.RTSPMediaFactory()
factory.set_launch(launch)
factory.set_shared(False)
server.get_mount_points().add_factory(a.mount, factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{a.port}")
print("ready", flush=True)
GLib.MainLoop().run()
