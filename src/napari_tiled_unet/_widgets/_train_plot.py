"""A small live plot of a training run, drawn with QPainter (no plotting library needed).

Training loss after every step (the mean over the epoch so far, as the trainer reports it)
and, after every validation, the validation loss on the same axis and the validation IoU
on a second axis from 0 to 1.  The x axis spans the whole run, so the curves grow from
left to right and the epochs show as faint vertical lines.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["LossPlot"]

LOSS_COLOUR = "#4c9be8"
VAL_LOSS_COLOUR = "#f5a623"
IOU_COLOUR = "#5cb85c"
# Margins (px) for the tick labels: left (loss), top (legend), right (IoU), bottom (steps).
_MARGINS = (44, 20, 34, 18)
# Draw epoch lines only when they are few enough to stay apart.
_MAX_EPOCH_LINES = 40


class LossPlot(QWidget):
    """The loss and validation curves of the run in progress (or of the last run)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip(
            "Blue: training loss (mean over the epoch so far), after every step. Orange: "
            "validation loss, green: validation IoU (right axis), after every epoch."
        )
        self.loss_points: list[tuple[int, float]] = []
        self.val_loss_points: list[tuple[int, float]] = []
        self.val_iou_points: list[tuple[int, float]] = []
        self._total, self._per_epoch = 1, 0

    def sizeHint(self) -> QSize:
        """Prefer a plot about twice as wide as high."""
        return QSize(320, 160)

    def minimumSizeHint(self) -> QSize:
        """Never squeeze the plot below readable (layouts ask this, not minimumSize)."""
        return QSize(200, 110)

    def start(self, total_steps: int, steps_per_epoch: int) -> None:
        """Forget the previous run and set the x axis to ``total_steps``."""
        self.loss_points, self.val_loss_points, self.val_iou_points = [], [], []
        self._total, self._per_epoch = max(total_steps, 1), steps_per_epoch
        self.update()

    def add(self, event: Any) -> None:
        """Add a :class:`~napari_tiled_unet.core.train.config.TrainProgress` event.

        A step adds a loss point; the end of an epoch adds the validation results, if any
        (its loss is the last step's, already shown).
        """
        if not event.epoch_end:
            self.loss_points.append((event.step, float(event.loss)))
        elif event.validated:
            if event.val_loss is not None:
                self.val_loss_points.append((event.step, float(event.val_loss)))
            if event.val_iou is not None:
                self.val_iou_points.append((event.step, float(event.val_iou)))
        self.update()

    # ------------------------------------------------------------------ drawing
    def paintEvent(self, _: Any) -> None:
        """Draw axes, epoch lines, the curves and a legend."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        left, top, right, bottom = _MARGINS
        area = QRectF(left, top, self.width() - left - right, self.height() - top - bottom)
        if not self.loss_points:
            painter.setPen(text)
            painter.drawText(
                self.rect(), Qt.AlignmentFlag.AlignCenter, "The loss appears here while training."
            )
            return
        top_loss = max(v for _, v in self.loss_points + self.val_loss_points) * 1.05 or 1.0
        self._draw_frame(painter, area, text, top_loss)
        loss_axis = (area, top_loss)
        self._draw_curve(painter, self.loss_points, loss_axis, LOSS_COLOUR, dots=False)
        self._draw_curve(painter, self.val_loss_points, loss_axis, VAL_LOSS_COLOUR, dots=True)
        self._draw_curve(painter, self.val_iou_points, (area, 1.0), IOU_COLOUR, dots=True)
        self._draw_legend(painter, area)

    def _point(self, area: QRectF, step: float, value: float, top_value: float) -> QPointF:
        x = area.left() + area.width() * step / self._total
        y = area.bottom() - area.height() * min(max(value / top_value, 0.0), 1.0)
        return QPointF(x, y)

    def _draw_frame(self, painter: QPainter, area: QRectF, text: QColor, top_loss: float) -> None:
        faint = QColor(text)
        faint.setAlpha(50)
        epochs = self._total // self._per_epoch if self._per_epoch else 0
        if 1 < epochs <= _MAX_EPOCH_LINES:
            painter.setPen(QPen(faint, 1, Qt.PenStyle.DashLine))
            for epoch in range(1, epochs):
                x = self._point(area, epoch * self._per_epoch, 0, 1).x()
                painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
        painter.setPen(QPen(text, 1))
        painter.drawRect(area)
        flags = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for fraction in (0.0, 0.5, 1.0):
            y = area.bottom() - area.height() * fraction
            box = QRectF(0, y - 8, area.left() - 4, 16)
            painter.drawText(box, flags, f"{top_loss * fraction:.3g}")
        if self.val_iou_points:
            for fraction in (0.0, 0.5, 1.0):
                y = area.bottom() - area.height() * fraction
                box = QRectF(area.right() + 4, y - 8, 30, 16)
                painter.drawText(
                    box,
                    Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                    f"{fraction:g}",
                )
        below = QRectF(area.left(), area.bottom() + 2, area.width(), 16)
        painter.drawText(below, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, "0")
        painter.drawText(below, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, "step")
        painter.drawText(
            below, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop, str(self._total)
        )

    def _draw_curve(
        self,
        painter: QPainter,
        points: list[tuple[int, float]],
        axis: tuple[QRectF, float],
        colour: str,
        *,
        dots: bool,
    ) -> None:
        if not points:
            return
        area, top_value = axis
        xy = [self._point(area, step, value, top_value) for step, value in points]
        path = QPainterPath(xy[0])
        for point in xy[1:]:
            path.lineTo(point)
        painter.setPen(QPen(QColor(colour), 1.5))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(path)
        if dots or len(xy) == 1:
            painter.setBrush(QColor(colour))
            for point in xy:
                painter.drawEllipse(point, 2.5, 2.5)

    def _draw_legend(self, painter: QPainter, area: QRectF) -> None:
        entries = [("loss", LOSS_COLOUR, self.loss_points)]
        entries += [("val loss", VAL_LOSS_COLOUR, self.val_loss_points)]
        entries += [("val IoU (right)", IOU_COLOUR, self.val_iou_points)]
        x = area.left()
        metrics = painter.fontMetrics()
        for name, colour, points in entries:
            if not points:
                continue
            painter.setPen(QColor(colour))
            label = f"\u2014 {name}"
            painter.drawText(QPointF(x, area.top() - 6), label)
            x += metrics.horizontalAdvance(label) + 12
