// The mixer window: a connection status line, the default output device,
// one strip per qube (label-colour bar, name, volume slider 0–150 %, mute,
// level meter, microphone indicator/Attach button, its own output device,
// latency and underruns on hover) and the Bluetooth section. Keyboard accessible (sliders, check
// boxes and buttons take focus and carry accessible names); styled by the desktop's Qt theme except
// for the label colour bar. Works without a tray.
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

#include "bt_panel.hpp"
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
  QComboBox* output() { return output_; }
  // Refills the output choice from the controller's device list.
  void updateOutputs();
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
  QComboBox* output_;
  QString output_device_;
  bool updating_ = false;
};

class MixerWindow : public QWidget {
  Q_OBJECT
 public:
  explicit MixerWindow(MixerController& mixer, QWidget* parent = nullptr);

  QubeStrip* strip(const QString& qube);
  QLabel* status() { return status_; }
  // The default output of every qube without a choice of its own.
  QComboBox* outputs() { return outputs_; }
  BluetoothPanel* bluetooth() { return bt_; }

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
  BluetoothPanel* bt_;
  std::map<QString, QubeStrip*> by_name_;
  bool filling_outputs_ = false;
};

}  // namespace qaudio::mixer
