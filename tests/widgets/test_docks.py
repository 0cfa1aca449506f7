"""The docks in a 1280 x 800 window: nothing cut off, and together they share one height."""

import sys
import threading

import pytest
from qtpy.QtWidgets import QAbstractButton, QLabel

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("user_folders")]

NAMES = ("Segment", "Batch", "Train")


def cut_off(dock):
    """Buttons, check boxes and one-line labels narrower than their text needs."""
    found = []
    for child in dock.findChildren((QAbstractButton, QLabel)):
        if not child.isVisible() or (isinstance(child, QLabel) and child.wordWrap()):
            continue
        hint = child.minimumSizeHint() if isinstance(child, QLabel) else child.sizeHint()
        if child.width() < hint.width():
            found.append(f"{child.text()!r}: {child.width()} < {hint.width()} px")
    return found


def window_with(make_napari_viewer, qtbot, names, size=(1280, 800)):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*size)
    docks = [viewer.window.add_plugin_dock_widget("napari-tiled-unet", n)[0] for n in names]
    qtbot.wait(200)  # the docks settle (styles, tabs) in the event loop
    return window, docks


@pytest.mark.parametrize("name", NAMES)
def test_a_dock_alone_shows_every_label_whole(make_napari_viewer, qtbot, name):
    window, (dock,) = window_with(make_napari_viewer, qtbot, [name], size=(1000, 700))
    assert (window.width(), window.height()) == (1000, 700)
    assert cut_off(dock) == []


def test_the_three_docks_open_as_tabs_without_growing_the_window(make_napari_viewer, qtbot):
    window, docks = window_with(make_napari_viewer, qtbot, NAMES)
    assert (window.width(), window.height()) == (1280, 800)
    assert set(window.tabifiedDockWidgets(docks[0])) == set(docks[1:])
    for dock in docks:
        dock.raise_()
        qtbot.wait(50)
        assert cut_off(dock) == [], dock.windowTitle()


def test_docks_import_ahead_in_a_thread_and_freeze_the_session_once(monkeypatch):
    from napari_tiled_unet._widgets import _workers

    frozen_in = []
    monkeypatch.setattr(_workers, "_frozen", threading.Event())
    monkeypatch.setattr(
        _workers.gc, "freeze", lambda: frozen_in.append(threading.current_thread().name)
    )
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    for _ in range(2):  # a second dock: imports skipped, nothing frozen again
        _workers.import_in_background(("colorsys", "no_such_module_here")).join()
    assert "colorsys" in sys.modules and "no_such_module_here" not in sys.modules
    assert frozen_in == ["napari-tiled-unet imports"]
