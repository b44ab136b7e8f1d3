// The mixer window: a connection status line, the output device choice and
// one strip per qube (label-colour bar, name, volume slider 0–150 %, mute,
// level meter, microphone indicator/Attach button, latency and underruns on
// hover). Keyboard accessible (sliders, check boxes and buttons take focus
// and carry accessible names); styled by the desktop's Qt theme except for
// the label colour bar. Works without a tray.
//
//   MixerWindow w(mixer);
//   w.show();
#pragma once

#include <QCheckBox>
#include <QComboBox>
#include <QFrame>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSlider>
#include <QWidget>

#include <map>

#include "mixer_controller.hpp"

namespace qaudio::mixer {

class QubeStrip : public QFrame {
  Q_OBJECT
 public:
  QubeStrip(MixerController& mixer, const QString& qube, QWidget* parent = nullptr);
  void update(const QubeRow& q);

  QSlider* slider() { return slider_; }
  QCheckBox* mute() { return mute_; }
  QPushButton* mic() { return mic_; }
  QProgressBar* meter() { return meter_; }
  QLabel* nameLabel() { return name_; }
  QFrame* colourBar() { return bar_; }

 private:
  MixerController& mixer_;
  QString qube_;
  QFrame* bar_;
  QLabel* name_;
  QSlider* slider_;
  QLabel* value_;
  QCheckBox* mute_;
  QProgressBar* meter_;
  QPushButton* mic_;
  bool updating_ = false;
};

class MixerWindow : public QWidget {
  Q_OBJECT
 public:
  explicit MixerWindow(MixerController& mixer, QWidget* parent = nullptr);

  QubeStrip* strip(const QString& qube);
  QLabel* status() { return status_; }
  QComboBox* outputs() { return outputs_; }

 protected:
  void showEvent(QShowEvent* e) override;
  void hideEvent(QHideEvent* e) override;

 private:
  void rebuild();
  void updateRows();
  void updateStatus();
  void updateOutputs();

  MixerController& mixer_;
  QLabel* status_;
  QComboBox* outputs_;
  QWidget* strips_box_;
  QHBoxLayout* strips_;
  QLabel* error_;
  std::map<QString, QubeStrip*> by_name_;
  bool filling_outputs_ = false;
};

}  // namespace qaudio::mixer
