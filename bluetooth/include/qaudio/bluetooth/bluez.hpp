// BlueZ's D-Bus API in one place: service, interface, method, property and
// error names, and the UUIDs of the audio profiles (bluez doc/*.txt,
// lib/uuid.h). Nothing else in qaudio spells a BlueZ name.
//
//   bus.call(path, bluez::kDevice, bluez::kPair, done);
#pragma once

#include <array>
#include <string_view>

namespace qaudio::bt::bluez {

inline constexpr const char* kService = "org.bluez";
inline constexpr const char* kRootPath = "/";
inline constexpr const char* kManagerPath = "/org/bluez";
inline constexpr const char* kPathPrefix = "/org/bluez/";

// Interfaces.
inline constexpr const char* kObjectManager = "org.freedesktop.DBus.ObjectManager";
inline constexpr const char* kProperties = "org.freedesktop.DBus.Properties";
inline constexpr const char* kAdapter = "org.bluez.Adapter1";
inline constexpr const char* kDevice = "org.bluez.Device1";
inline constexpr const char* kBattery = "org.bluez.Battery1";
inline constexpr const char* kAgent = "org.bluez.Agent1";
inline constexpr const char* kAgentManager = "org.bluez.AgentManager1";

// ObjectManager / Properties members.
inline constexpr const char* kGetManagedObjects = "GetManagedObjects";
inline constexpr const char* kInterfacesAdded = "InterfacesAdded";
inline constexpr const char* kInterfacesRemoved = "InterfacesRemoved";
inline constexpr const char* kPropertiesChanged = "PropertiesChanged";
inline constexpr const char* kSet = "Set";

// Adapter1.
inline constexpr const char* kStartDiscovery = "StartDiscovery";
inline constexpr const char* kStopDiscovery = "StopDiscovery";
inline constexpr const char* kSetDiscoveryFilter = "SetDiscoveryFilter";
inline constexpr const char* kRemoveDevice = "RemoveDevice";
// Device1.
inline constexpr const char* kPair = "Pair";
inline constexpr const char* kCancelPairing = "CancelPairing";
inline constexpr const char* kConnect = "Connect";
inline constexpr const char* kDisconnect = "Disconnect";
// AgentManager1.
inline constexpr const char* kRegisterAgent = "RegisterAgent";
inline constexpr const char* kUnregisterAgent = "UnregisterAgent";
inline constexpr const char* kRequestDefaultAgent = "RequestDefaultAgent";
// Agent1 (methods BlueZ calls on us).
inline constexpr const char* kRelease = "Release";
inline constexpr const char* kRequestPinCode = "RequestPinCode";
inline constexpr const char* kDisplayPinCode = "DisplayPinCode";
inline constexpr const char* kRequestPasskey = "RequestPasskey";
inline constexpr const char* kDisplayPasskey = "DisplayPasskey";
inline constexpr const char* kRequestConfirmation = "RequestConfirmation";
inline constexpr const char* kRequestAuthorization = "RequestAuthorization";
inline constexpr const char* kAuthorizeService = "AuthorizeService";
inline constexpr const char* kCancel = "Cancel";

// Properties.
inline constexpr const char* kAddress = "Address";
inline constexpr const char* kAlias = "Alias";
inline constexpr const char* kName = "Name";
inline constexpr const char* kPowered = "Powered";
inline constexpr const char* kDiscoverable = "Discoverable";
inline constexpr const char* kDiscovering = "Discovering";
inline constexpr const char* kPairable = "Pairable";
inline constexpr const char* kAdapterProp = "Adapter";
inline constexpr const char* kIcon = "Icon";
inline constexpr const char* kClass = "Class";
inline constexpr const char* kRssi = "RSSI";
inline constexpr const char* kPaired = "Paired";
inline constexpr const char* kTrusted = "Trusted";
inline constexpr const char* kConnected = "Connected";
inline constexpr const char* kBlocked = "Blocked";
inline constexpr const char* kUuids = "UUIDs";
inline constexpr const char* kPercentage = "Percentage";  // Battery1
// SetDiscoveryFilter keys.
inline constexpr const char* kFilterUuids = "UUIDs";
inline constexpr const char* kFilterTransport = "Transport";

// Errors we send (Agent1 replies) and recognise.
inline constexpr const char* kErrorRejected = "org.bluez.Error.Rejected";
inline constexpr const char* kErrorCanceled = "org.bluez.Error.Canceled";
inline constexpr const char* kErrorAlreadyExists = "org.bluez.Error.AlreadyExists";
inline constexpr const char* kErrorAlreadyConnected = "org.bluez.Error.AlreadyConnected";
inline constexpr const char* kErrorNotConnected = "org.bluez.Error.NotConnected";

// Agent capability we register with: we can show a passkey and take input.
inline constexpr const char* kCapability = "KeyboardDisplay";

// Audio profiles (lib/uuid.h): headset, handsfree, A2DP, LE audio.
inline constexpr std::array<std::string_view, 9> kAudioUuids = {
    "00001108-0000-1000-8000-00805f9b34fb",  // HSP
    "00001112-0000-1000-8000-00805f9b34fb",  // HSP AG
    "0000111e-0000-1000-8000-00805f9b34fb",  // HFP HF
    "0000111f-0000-1000-8000-00805f9b34fb",  // HFP AG
    "0000110a-0000-1000-8000-00805f9b34fb",  // A2DP source
    "0000110b-0000-1000-8000-00805f9b34fb",  // A2DP sink
    "0000110d-0000-1000-8000-00805f9b34fb",  // A2DP
    "0000184e-0000-1000-8000-00805f9b34fb",  // LE Audio stream control
    "00001850-0000-1000-8000-00805f9b34fb",  // LE Audio published capabilities
};
// Major device class "Audio/Video" (Class bits 8..12).
inline constexpr unsigned kMajorClassAudioVideo = 0x04;

}  // namespace qaudio::bt::bluez
