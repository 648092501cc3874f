"""GIFs written by `rtcbench render` and `report --videos` last len(frames)/fps seconds: a GIF stores frame delays
in whole hundredths of a second, so 1/15 s (6.67 cs) written as 6 cs each played 11 % fast."""

import numpy as np
import pytest
from PIL import Image

from rtcbench.engine.render import gif_frame_durations_ms
from rtcbench.errors import UserError
from rtcbench.videos import GIF_MAX_FPS, check_gif_fps, write_frames


def _frames(n: int) -> list[np.ndarray]:
    """Frames that all differ (Pillow merges equal consecutive frames into one)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8) for _ in range(n)]


def _durations_read_back(path) -> list[int]:
    with Image.open(path) as im:
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    return durations


@pytest.mark.parametrize(("n_frames", "fps"), [(45, 15), (100, 15), (31, 30), (20, 12), (7, 24), (10, 50), (3, 1)])
def test_gif_lasts_frames_over_fps(tmp_path, n_frames, fps):
    out = tmp_path / "rollout.gif"
    write_frames(_frames(n_frames), out, fps)
    durations = _durations_read_back(out)
    assert len(durations) == n_frames
    assert sum(durations) == pytest.approx(1000 * n_frames / fps, rel=0.01)
    # and every prefix is on time within half a hundredth of a second: no drift along the video
    assert np.all(np.abs(np.cumsum(durations) - 1000 * np.arange(1, n_frames + 1) / fps) <= 5 + 1e-9)
    assert not list(tmp_path.glob("*.partial*"))


def test_gif_delays_at_15_fps_alternate_6_and_7_hundredths():
    assert gif_frame_durations_ms(6, 15) == [70, 60, 70, 70, 60, 70]
    assert gif_frame_durations_ms(4, 10) == [100] * 4


def test_gif_refuses_frame_rates_it_cannot_play(tmp_path):
    with pytest.raises(UserError) as err:
        write_frames(_frames(2), tmp_path / "fast.gif", GIF_MAX_FPS + 1)
    assert err.value.field == "--fps" and not (tmp_path / "fast.gif").exists()
    check_gif_fps(GIF_MAX_FPS)  # the fastest a GIF plays is accepted
