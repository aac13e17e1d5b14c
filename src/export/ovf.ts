/**
 * The OVF 1.0 descriptor of an OVA (DMTF DSP0243), built with xml2js's Builder: one
 * VirtualSystem with one disk, the least VMware's and VirtualBox's importers take — the
 * References and DiskSection that name the streamOptimized vmdk (capacity in bytes, the bytes
 * the guest populated), an OperatingSystemSection, and a VirtualHardwareSection with a CPU,
 * memory, an LSI Logic SCSI controller and the disk on it. The hardware is a starting point the
 * importer lets the user change; the disk is what matters.
 */
import { Builder } from 'xml2js';

/** VMware's URI for a streamOptimized vmdk: the only disk format its OVA import takes. */
export const VMDK_STREAM_OPTIMIZED_URI = 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized';

const NS = {
  xmlns: 'http://schemas.dmtf.org/ovf/envelope/1',
  'xmlns:ovf': 'http://schemas.dmtf.org/ovf/envelope/1',
  'xmlns:cim': 'http://schemas.dmtf.org/wbem/wscim/1/common',
  'xmlns:rasd': 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData',
  'xmlns:vssd': 'http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData',
  'xmlns:vmw': 'http://www.vmware.com/schema/ovf',
  'xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance',
};

/** CIM operating-system id 102, "Other 64-Bit": sparsify does not inspect the guest here. */
const CIM_OS_OTHER_64 = '102';
/** CIM ResourceType values (CIM_ResourceAllocationSettingData). */
const RESOURCE = { cpu: '3', memory: '4', scsi: '6', disk: '17' } as const;
/** VMware hardware version 10 (ESXi 5.5 and later) takes LSI Logic and 64-bit "other" guests. */
const VIRTUAL_SYSTEM_TYPE = 'vmx-10';

/** What the descriptor describes. */
export interface OvfDisk {
  /** The virtual system's name (also its id). */
  readonly name: string;
  /** The vmdk's file name inside the OVA. */
  readonly diskFile: string;
  /** The vmdk file's size in bytes (References/File/@ovf:size). */
  readonly fileSizeBytes: number;
  /** The disk's virtual size in bytes (Disk/@ovf:capacity). */
  readonly capacityBytes: number;
  /** Bytes of the disk that hold data (Disk/@ovf:populatedSize). */
  readonly populatedBytes: number;
  readonly cpus?: number;
  readonly memoryMiB?: number;
}

/** The descriptor's XML text. */
export function buildOvf(d: OvfDisk): string {
  const cpus = d.cpus ?? 1;
  const memoryMiB = d.memoryMiB ?? 1024;
  const envelope = {
    Envelope: {
      $: { 'ovf:version': '1.0', 'xml:lang': 'en-US', ...NS },
      References: { File: { $: { 'ovf:href': d.diskFile, 'ovf:id': 'file1', 'ovf:size': String(d.fileSizeBytes) } } },
      DiskSection: {
        Info: 'Virtual disk information',
        Disk: {
          $: {
            'ovf:capacity': String(d.capacityBytes),
            'ovf:capacityAllocationUnits': 'byte',
            'ovf:diskId': 'vmdisk1',
            'ovf:fileRef': 'file1',
            'ovf:format': VMDK_STREAM_OPTIMIZED_URI,
            'ovf:populatedSize': String(d.populatedBytes),
          },
        },
      },
      VirtualSystem: {
        $: { 'ovf:id': d.name },
        Info: 'A virtual machine',
        Name: d.name,
        OperatingSystemSection: { $: { 'ovf:id': CIM_OS_OTHER_64, 'vmw:osType': 'other3xLinux64Guest' }, Info: 'The kind of installed guest operating system' },
        VirtualHardwareSection: {
          Info: 'Virtual hardware requirements',
          System: {
            'vssd:ElementName': 'Virtual Hardware Family',
            'vssd:InstanceID': '0',
            'vssd:VirtualSystemIdentifier': d.name,
            'vssd:VirtualSystemType': VIRTUAL_SYSTEM_TYPE,
          },
          // rasd elements in the schema's (alphabetical) order.
          Item: [
            {
              'rasd:AllocationUnits': 'hertz * 10^6',
              'rasd:Description': 'Number of Virtual CPUs',
              'rasd:ElementName': `${cpus} virtual CPU(s)`,
              'rasd:InstanceID': '1',
              'rasd:ResourceType': RESOURCE.cpu,
              'rasd:VirtualQuantity': String(cpus),
            },
            {
              'rasd:AllocationUnits': 'byte * 2^20',
              'rasd:Description': 'Memory Size',
              'rasd:ElementName': `${memoryMiB}MB of memory`,
              'rasd:InstanceID': '2',
              'rasd:ResourceType': RESOURCE.memory,
              'rasd:VirtualQuantity': String(memoryMiB),
            },
            {
              'rasd:Address': '0',
              'rasd:Description': 'SCSI Controller',
              'rasd:ElementName': 'SCSI Controller 0',
              'rasd:InstanceID': '3',
              'rasd:ResourceSubType': 'lsilogic',
              'rasd:ResourceType': RESOURCE.scsi,
            },
            {
              'rasd:AddressOnParent': '0',
              'rasd:ElementName': 'Hard Disk 1',
              'rasd:HostResource': 'ovf:/disk/vmdisk1',
              'rasd:InstanceID': '4',
              'rasd:Parent': '3',
              'rasd:ResourceType': RESOURCE.disk,
            },
          ],
        },
      },
    },
  };
  return new Builder({ xmldec: { version: '1.0', encoding: 'UTF-8' } }).buildObject(envelope) + '\n';
}
