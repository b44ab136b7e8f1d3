// The mixer window (see mixer_window.hpp).
#include "mixer_window.hpp"

#include <QFormLayout>
#include <QVBoxLayout>

namespace qaudio::mixer {

namespace {

// A device's description, with its name when another device has the same
// description (two PulseAudio null sinks are both "Null Output").
QString outputLabel(const OutputDevice& d, const std::vector<OutputDevice>& all) {
  if (d.description.isEmpty()) {
    return d.name;
  }
  int same = 0;
  for (const auto& o : all) {
    same += o.description == d.description;
  }
  return same > 1 ? QStringLiteral("%1 (%2)").arg(d.description, d.name) : d.description;
}

}  // namespace

QubeStrip::QubeStrip(MixerController& mixer, const QString& qube, QWidget* parent)
    : QFrame(parent), mixer_(mixer), qube_(qube) {
  setObjectName("strip:" + qube);
  setFrameShape(QFrame::StyledPanel);
  auto* v = new QVBoxLayout(this);
  bar_ = new QFrame(this);
  bar_->setFixedHeight(6);
  bar_->setAutoFillBackground(true);
  v->addWidget(bar_);
  name_ = new QLabel(qube, this);
  name_->setAlignment(Qt::AlignHCenter);
  QFont f = name_->font();
  f.setBold(true);
  name_->setFont(f);
  v->addWidget(name_);

  auto* h = new QHBoxLayout;
  slider_ = new QSlider(Qt::Vertical, this);
  slider_->setRange(0, 150);
  slider_->setPageStep(10);
  slider_->setTickPosition(QSlider::TicksBothSides);
  slider_->setTickInterval(50);
  slider_->setMinimumHeight(140);
  slider_->setFocusPolicy(Qt::StrongFocus);
  slider_->setAccessibleName(QStringLiteral("Volume of %1").arg(qube));
  h->addWidget(slider_, 0, Qt::AlignHCenter);
  meter_ = new QProgressBar(this);
  meter_->setOrientation(Qt::Vertical);
  meter_->setRange(0, 100);
  meter_->setTextVisible(false);
  meter_->setFixedWidth(10);
  meter_->setAccessibleName(QStringLiteral("Level of %1").arg(qube));
  h->addWidget(meter_, 0, Qt::AlignHCenter);
  v->addLayout(h);

  value_ = new QLabel(this);
  value_->setAlignment(Qt::AlignHCenter);
  v->addWidget(value_);
  mute_ = new QCheckBox(QStringLiteral("&Mute"), this);
  mute_->setAccessibleName(QStringLiteral("Mute %1").arg(qube));
  v->addWidget(mute_, 0, Qt::AlignHCenter);  // its hit area is its text: keep it compact
  mic_ = new QPushButton(this);
  mic_->setAccessibleName(QStringLiteral("Microphone of %1").arg(qube));
  v->addWidget(mic_);
  output_ = new QComboBox(this);
  output_->setObjectName("output:" + qube);
  output_->setAccessibleName(QStringLiteral("Output device of %1").arg(qube));
  output_->setToolTip(QStringLiteral("Where %1 plays").arg(qube));
  v->addWidget(output_);
  connect(output_, &QComboBox::activated, this, [this](int i) {
    if (!updating_ && i >= 0) {
      mixer_.setOutput(output_->itemData(i).toString(), qube_);
    }
  });

  connect(slider_, &QSlider::valueChanged, this, [this](int value) {
    value_->setText(QStringLiteral("%1 %").arg(value));
    if (!updating_) {
      mixer_.setVolume(qube_, value);
    }
  });
  connect(mute_, &QCheckBox::toggled, this, [this](bool on) {
    if (!updating_) {
      mixer_.setMute(qube_, on);
    }
  });
  connect(mic_, &QPushButton::clicked, this, [this] {
    const QubeRow* q = mixer_.model().find(qube_);
    if (q == nullptr) {
      return;
    }
    if (q->mic_attached) {
      mixer_.detachMic(qube_);
    } else {
      mixer_.attachMic(qube_, /*confirmed=*/true);
    }
  });
}

void QubeStrip::update(const QubeRow& q) {
  updating_ = true;
  QPalette pal = bar_->palette();
  pal.setColor(QPalette::Window, labelColor(q.label));
  bar_->setPalette(pal);
  if (!slider_->isSliderDown() && !mixer_.volumePending(qube_)) {
    slider_->setValue(q.volume);
  }
  value_->setText(QStringLiteral("%1 %").arg(slider_->value()));
  mute_->setChecked(q.muted);
  if (q.level < 0) {
    meter_->setEnabled(false);
    meter_->setValue(0);
    meter_->setToolTip(QStringLiteral("This daemon reports no levels"));
  } else {
    meter_->setEnabled(true);
    meter_->setValue(static_cast<int>(q.level * 100 + 0.5));
    meter_->setToolTip(QStringLiteral("Peak %1 %").arg(static_cast<int>(q.level * 100 + 0.5)));
  }
  if (q.mic_attached) {
    mic_->setText(QStringLiteral("● Mic on"));
    mic_->setToolTip(
        QStringLiteral("The microphone is attached to %1; click to detach").arg(q.name));
    mic_->setEnabled(true);
  } else if (q.micDenied()) {
    mic_->setText(QStringLiteral("Mic denied"));
    mic_->setToolTip(QStringLiteral("Policy qaudio.Mic denies the microphone to %1").arg(q.name));
    mic_->setEnabled(false);
  } else if (q.micPending()) {
    mic_->setText(QStringLiteral("Attach mic"));
    mic_->setToolTip(QStringLiteral("%1 wants the microphone; click to attach").arg(q.name));
    mic_->setEnabled(true);
  } else {
    mic_->setText(QStringLiteral("Mic off"));
    mic_->setToolTip(QStringLiteral("Click to attach the microphone to %1").arg(q.name));
    mic_->setEnabled(true);
  }
  QString tip = QStringLiteral("%1: %2, protocol %3\nlatency %4 ms, underruns %5")
                    .arg(q.name, q.state, q.protocol)
                    .arg(q.latency_us / 1000.0, 0, 'f', 1)
                    .arg(q.underruns);
  if (!q.last_error.isEmpty()) {
    tip += QStringLiteral("\nlast error: %1").arg(q.last_error);
  }
  setToolTip(tip);
  name_->setEnabled(q.running());
  updating_ = false;
  if (q.output_device != output_device_ || output_->count() == 0) {
    output_device_ = q.output_device;
    updateOutputs();
  }
}

void QubeStrip::updateOutputs() {
  updating_ = true;
  output_->clear();
  output_->addItem(QStringLiteral("Default output"), QString());
  int current = 0;
  for (const auto& d : mixer_.outputs()) {
    output_->addItem(outputLabel(d, mixer_.outputs()), d.name);
    if (d.name == output_device_) {
      current = output_->count() - 1;
    }
  }
  if (!output_device_.isEmpty() && current == 0) {
    // Chosen, but not there now: the daemon plays to the default meanwhile.
    output_->addItem(QStringLiteral("%1 (not present)").arg(output_device_), output_device_);
    current = output_->count() - 1;
  }
  output_->setCurrentIndex(current);
  output_->setEnabled(!mixer_.outputs().empty());
  updating_ = false;
}

MixerWindow::MixerWindow(MixerController& mixer, QWidget* parent) : QWidget(parent), mixer_(mixer) {
  setObjectName("mixerWindow");
  setWindowTitle(QStringLiteral("Qubes audio mixer"));
  auto* v = new QVBoxLayout(this);
  status_ = new QLabel(this);
  status_->setObjectName("status");
  v->addWidget(status_);
  auto* form = new QFormLayout;
  outputs_ = new QComboBox(this);
  outputs_->setObjectName("outputs");
  outputs_->setAccessibleName(QStringLiteral("Default output device"));
  outputs_->setToolTip(QStringLiteral("Where qubes without a choice of their own play"));
  auto* out_label = new QLabel(QStringLiteral("Default &output device:"), this);
  out_label->setBuddy(outputs_);
  form->addRow(out_label, outputs_);
  v->addLayout(form);
  strips_box_ = new QWidget(this);
  strips_ = new QHBoxLayout(strips_box_);
  strips_->setContentsMargins(0, 0, 0, 0);
  v->addWidget(strips_box_, 1);
  error_ = new QLabel(this);
  error_->setObjectName("error");
  error_->setWordWrap(true);
  error_->hide();
  v->addWidget(error_);
  bt_ = new BluetoothPanel(mixer_.bluetooth(), this);
  v->addWidget(bt_);

  QubeModel& m = mixer_.model();
  connect(&m, &QAbstractItemModel::modelReset, this, &MixerWindow::rebuild);
  connect(&m, &QAbstractItemModel::dataChanged, this, &MixerWindow::updateRows);
  connect(&mixer_, &MixerController::connectionChanged, this, [this](bool) {
    error_->hide();  // errors of the previous connection no longer apply
    updateStatus();
  });
  connect(&mixer_, &MixerController::ready, this, &MixerWindow::updateStatus);
  connect(&mixer_, &MixerController::devicesChanged, this, &MixerWindow::updateOutputs);
  connect(&mixer_, &MixerController::error, this, [this](const QString& msg) {
    error_->setText(msg);
    error_->show();
  });
  connect(outputs_, &QComboBox::activated, this, [this](int i) {
    if (!filling_outputs_ && i >= 0) {
      mixer_.setOutput(outputs_->itemData(i).toString());
    }
  });
  rebuild();
  updateStatus();
  updateOutputs();
}

QubeStrip* MixerWindow::strip(const QString& qube) {
  auto it = by_name_.find(qube);
  return it == by_name_.end() ? nullptr : it->second;
}

void MixerWindow::rebuild() {
  for (auto& [name, s] : by_name_) {
    s->hide();
    s->deleteLater();
  }
  by_name_.clear();
  while (strips_->count() > 0) {
    delete strips_->takeAt(0);
  }
  for (const auto& q : mixer_.model().rows()) {
    auto* s = new QubeStrip(mixer_, q.name, strips_box_);
    s->update(q);
    strips_->addWidget(s);
    by_name_[q.name] = s;
  }
  strips_->addStretch(1);
  updateStatus();
}

void MixerWindow::updateRows() {
  for (const auto& q : mixer_.model().rows()) {
    if (QubeStrip* s = strip(q.name)) {
      s->update(q);
    }
  }
  updateStatus();
}

void MixerWindow::updateStatus() {
  if (!mixer_.isConnected()) {
    status_->setText(QStringLiteral("Disconnected from %1 (%2); reconnecting…")
                         .arg(mixer_.client().path(), mixer_.client().lastError()));
    strips_box_->setEnabled(false);
    outputs_->setEnabled(false);
    return;
  }
  strips_box_->setEnabled(true);
  outputs_->setEnabled(outputs_->count() > 1);
  int n = static_cast<int>(mixer_.model().rows().size());
  int pending = mixer_.model().pendingMicRequests();
  QString text = QStringLiteral("Connected to %1 (backend %2): %3 qube(s)")
                     .arg(mixer_.client().path(), mixer_.backend())
                     .arg(n);
  if (pending > 0) {
    text += QStringLiteral(", %1 microphone request(s) waiting").arg(pending);
  }
  status_->setText(text);
}

void MixerWindow::updateOutputs() {
  filling_outputs_ = true;
  outputs_->clear();
  outputs_->addItem(QStringLiteral("Sound server's default"), QString());
  int current = 0;
  for (const auto& d : mixer_.outputs()) {
    QString text = outputLabel(d, mixer_.outputs());
    if (d.is_default) {
      text += QStringLiteral(" (server default)");
    }
    outputs_->addItem(text, d.name);
    if (d.name == mixer_.defaultOutput()) {
      current = outputs_->count() - 1;
    }
  }
  outputs_->setCurrentIndex(current);
  filling_outputs_ = false;
  for (auto& [name, strip] : by_name_) {
    strip->updateOutputs();
  }
  updateStatus();
}

void MixerWindow::showEvent(QShowEvent* e) {
  QWidget::showEvent(e);
  mixer_.setRefreshInterval(1000);  // latency/underrun counters for the tooltips
  mixer_.refresh();
}

void MixerWindow::hideEvent(QHideEvent* e) {
  QWidget::hideEvent(e);
  mixer_.setRefreshInterval(0);
}

}  // namespace qaudio::mixer
